"""``python -m clipbayes.evaluation PREDICTIONS.npz``: every metric, recomputed from a saved predictions file
(``TEST.SAVE_PREDICTIONS True``), raw and with the temperature stored in the file."""
import argparse
import json
import math
import sys

import torch

from clipbayes.evaluation.report import Predictions, load_predictions

parser = argparse.ArgumentParser(prog="python -m clipbayes.evaluation", description=__doc__.split("\n\n")[0])
parser.add_argument("predictions", help="a predictions*.npz file written beside a run's log")
args = parser.parse_args()
try:
    saved = load_predictions(args.predictions)
except (OSError, ValueError) as err:
    sys.exit(f"error: cannot read {args.predictions}: {err}")
predictions = Predictions(torch.from_numpy(saved["probs"]).double().clamp_min(1e-30).log(),
                          torch.from_numpy(saved["labels"]))
out = {"num_images": len(predictions.labels), "metrics": predictions.metrics()}
temperature = float(saved["temperature"])
if not math.isnan(temperature):
    out.update(temperature=temperature, temperature_scaled=predictions.metrics(temperature))
print(json.dumps(out, indent=1))
