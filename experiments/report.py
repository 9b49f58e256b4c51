r"""Write the report of a demo workdir: results beside the paper's, curves, figures, claims.

  python -m experiments.report --workdir=W

W is a workdir filled by `python -m experiments.demo` (its index is W/demo.json). Writes
W/report.md and the PNGs it links under W/report/, prints the paper's claims judged on W's numbers
and then the report's path. Imports no jax: it reads files only.
"""

from absl import flags

from reid_jax import cli
from reid_jax import report

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "a demo workdir (holds demo.json, written by "
                    "python -m experiments.demo)", required=True)


def main(overrides):
  del overrides  # this command takes no config
  demo = report.load_demo(FLAGS.workdir)
  path = report.write_report(FLAGS.workdir)
  for claim in report.claims(demo, FLAGS.workdir):
    print(f"- {claim['sentence']}")
  print(path)


if __name__ == "__main__":
  cli.run(main)
