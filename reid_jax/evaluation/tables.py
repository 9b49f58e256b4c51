"""Tables for people: the console summary of a run (docs/design.md §5)."""


def format_table(rows: dict[str, dict]) -> str:
  """A people's table: dataset, rank-1/5/10/20 and mAP in %, one decimal (docs/design.md §5)."""
  header = f"{'dataset':<16}{'rank-1':>8}{'rank-5':>8}{'rank-10':>9}{'rank-20':>9}{'mAP':>8}"
  lines = [header, "-" * len(header)]
  for name, entry in rows.items():
    lines.append(f"{name:<16}" + "".join(
        f"{100 * entry[k]:>{w}.1f}" for k, w in
        (("rank1", 8), ("rank5", 8), ("rank10", 9), ("rank20", 9), ("mAP", 8))))
  return "\n".join(lines)
