"""The closing JSON line of every benchmark (design README §8): one comparison per line."""

import json


def comparison(metric: str, ours: float, reference: str, reference_value: float, config: str,
               *, lower_is_better: bool = False, device: str = "cpu") -> str:
  """`{"metric", "ours", "reference", "reference_value", "ratio", "device", "config"}` as JSON.

  ratio > 1 means we are ahead: ours / reference for rates, reference / ours for times and sizes
  (`lower_is_better`).
  """
  ratio = reference_value / ours if lower_is_better else ours / reference_value
  return json.dumps({"metric": metric, "ours": round(ours, 4), "reference": reference,
                     "reference_value": round(reference_value, 4), "ratio": round(ratio, 3),
                     "device": device, "config": config})
