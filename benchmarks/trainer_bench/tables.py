"""The printed tables of the configuration rows: training (s/step per variant, floor, tokens, memory) and
prediction (per TEST.MC_DRAWS mode beside CoOp)."""
from __future__ import annotations


def fmt(v, spec):
    """``v`` formatted, or "-" for None."""
    return "-" if v is None else format(v, spec)


def training_table(rows, cuda: bool) -> str:
    """One line per configuration (an error row shows its error)."""
    from tabulate import tabulate

    table = []
    for r in rows:
        if "error" in r:
            table.append([r["config"], "ERROR: " + r["error"][:100]])
            continue
        steps, tok = r["steps"], r["tokens"]
        ratio = (steps["one_length"] / steps["bucketed"]) if len(steps) == 2 else None
        floor = r["floor_s"]
        mem = (f"{r['train_peak_mib']:.0f} / {r['test_peak_mib']:.0f}" if cuda
               else f"{r['rss_growth_mib']:.0f} (peak {r['peak_rss_mib']:.0f})")
        table.append([r["config"], fmt(steps.get("bucketed"), ".4f"), fmt(steps.get("one_length"), ".4f"),
                      fmt(ratio, ".2f"), fmt(floor, ".4f"), fmt(r["s_per_step"] / floor if floor else None, ".2f"),
                      fmt(r.get("overhead_over_base"), ".2f"), fmt(r.get("overhead_over_base_row"), ".2f"),
                      tok["sequences"], f"{tok['official']} / {tok['longest']} / {tok['bucketed']} / {tok['needed']}",
                      fmt(r["image_tokens_per_step"], "d"), mem, r["trainable_params"]])
    return tabulate(table, headers=[
        "configuration", "s/step bucketed", "s/step one length", "one length / bucketed", "floor s/step",
        "step / floor", "x base (same process)", "x base row", "text seqs / step",
        "text tokens / step: 77 x seqs / longest x seqs / bucketed / needed", "image tokens / step",
        "train / test peak MiB" if cuda else "peak RSS growth MiB", "trainable params"])


def prediction_table(rows) -> str:
    """One line per configuration and TEST.MC_DRAWS mode, with CoOp's steady img/s from the same process."""
    from tabulate import tabulate

    table = []
    for r in rows:
        if "error" in r:
            continue
        pred = r["prediction"]
        coop = pred.get("CoOp")
        for mode in ("per_batch", "per_evaluation"):
            if mode not in pred:
                continue
            e = pred[mode]
            seqs = e["sequences"]
            table.append([r["config"], mode, f"{e['steady_img_per_s']:.1f}", f"{e['img_per_s']:.1f}",
                          f"{e['one_off_s']:.3f}", " / ".join(str(n) for n in seqs[:2]),
                          fmt(coop["steady_img_per_s"] if coop else None, ".1f"),
                          fmt(coop["steady_img_per_s"] / e["steady_img_per_s"] if coop else None, ".2f")])
    return tabulate(table, headers=[
        "configuration", "TEST.MC_DRAWS", "img/s (steady)", "img/s (whole evaluation)", "one-off s (batch 1 extra)",
        "text seqs test batch 1 / 2", "CoOp img/s (steady, same process)", "CoOp / this (steady)"])
