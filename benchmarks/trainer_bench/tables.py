"""The printed tables of the configuration rows: training (s/step per variant, floor, tokens, memory) and
prediction (per TEST.MC_DRAWS mode beside CoOp and, for a treatment, its base; ReBaPL's samples' memory)."""
from __future__ import annotations


def fmt(v, spec):
    """``v`` formatted, or "-" for None."""
    return "-" if v is None else format(v, spec)


def ratio(numerator, denominator):
    """numerator / denominator, or None when either is missing."""
    return None if numerator is None or denominator is None else numerator / denominator


def training_table(rows, cuda: bool) -> str:
    """One line per configuration (an error row shows its error)."""
    from tabulate import tabulate

    table = []
    for r in rows:
        if "error" in r:
            table.append([r["config"], "ERROR: " + r["error"][:100]])
            continue
        steps, tok = r["steps"], r["tokens"]
        shared, bucketed, one_length = (steps.get(name) for name in ("shared", "bucketed", "one_length"))
        floor = r["floor_s"]
        mem = (f"{r['train_peak_mib']:.0f} / {r['test_peak_mib']:.0f}" if cuda
               else f"{r['rss_growth_mib']:.0f} (peak {r['peak_rss_mib']:.0f})")
        table.append([r["config"], fmt(shared, ".4f"), fmt(bucketed, ".4f"), fmt(one_length, ".4f"),
                      fmt(ratio(bucketed, shared), ".2f"), fmt(ratio(one_length, bucketed), ".2f"), fmt(floor, ".4f"),
                      fmt(r["s_per_step"] / floor if floor else None, ".2f"),
                      fmt(r.get("overhead_over_base"), ".2f"), fmt(r.get("overhead_over_base_row"), ".2f"),
                      tok["sequences"], f"{tok['official']} / {tok['longest']} / {tok['bucketed']} / {tok['needed']} / "
                                        f"{tok['distinct']}",
                      fmt(r["image_tokens_per_step"], "d"), mem, r["trainable_params"]])
    return tabulate(table, headers=[
        "configuration", "s/step shared", "s/step bucketed", "s/step one length", "bucketed / shared",
        "one length / bucketed", "floor s/step", "step / floor", "x base (same process)", "x base row",
        "text seqs / step", "text tokens / step: 77 x seqs / longest x seqs / bucketed / needed / distinct",
        "image tokens / step", "train / test peak MiB" if cuda else "peak RSS growth MiB", "trainable params"])


def prediction_table(rows) -> str:
    """One line per configuration and TEST.MC_DRAWS mode: steady img/s with prefix sharing and with whole prompts,
    and CoOp's steady img/s from the same process."""
    from tabulate import tabulate

    table = []
    for r in rows:
        if "error" in r:
            continue
        pred = r["prediction"]
        coop, base = pred.get("CoOp"), pred.get("base")
        for mode in ("per_batch", "per_evaluation"):
            if mode not in pred:
                continue
            e, whole = pred[mode], pred.get(f"{mode}, whole prompts")
            seqs = e["sequences"]
            table.append([r["config"], mode, f"{e['steady_img_per_s']:.1f}",
                          fmt(whole["steady_img_per_s"] if whole else None, ".1f"),
                          fmt(ratio(e["steady_img_per_s"], whole["steady_img_per_s"]) if whole else None, ".2f"),
                          f"{e['img_per_s']:.1f}", f"{e['one_off_s']:.3f}", " / ".join(str(n) for n in seqs[:2]),
                          fmt(coop["steady_img_per_s"] if coop else None, ".1f"),
                          fmt(coop["steady_img_per_s"] / e["steady_img_per_s"] if coop else None, ".2f"),
                          fmt(ratio(base["steady_img_per_s"], e["steady_img_per_s"]) if base else None, ".2f"),
                          fmt(r.get("samples_mib"), ".2f")])
    return tabulate(table, headers=[
        "configuration", "TEST.MC_DRAWS", "img/s (steady)", "img/s whole prompts (steady)", "shared / whole",
        "img/s (whole evaluation)", "one-off s (batch 1 extra)", "text seqs test batch 1 / 2",
        "CoOp img/s (steady, same process)", "CoOp / this (steady)", "base / this (steady, same process)",
        "samples MiB (ReBaPL's K)"])
