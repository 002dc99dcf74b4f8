"""The printed table of a review models run (from its ``metrics.json`` content)."""
from __future__ import annotations


def _sizes(m: dict) -> str:
    z = m["sizes"]
    text = f"train {z['train']:,} / validation {z['validation']:,} / test {z['test']:,} reviews"
    if z.get("unlabeled"):
        text += f" ({z['unlabeled']:,} without a label left out)"
    return text


def _params(p: dict) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v:,}" if isinstance(v, int)
                    else f"{k}={v}" for k, v in p.items() if k != "intercept")


def format_verified(m: dict) -> list[str]:
    share = m["positives"]["train"] / max(m["sizes"]["train"], 1)
    lines = [f"task verified: {_sizes(m)}; {share:.1%} of the training split verified",
             f"{'model':<40} {'val BER':>8} {'val AUC':>8} {'test BER':>9} {'test AUC':>9} {'threshold':>10}"]
    for k in m["order"]:
        v, t = m["validation"][k], m["test"][k]
        lines.append(f"{m['labels'][k]:<40} {v['ber']:8.4f} {v['auc']:8.4f} {t['ber']:9.4f} {t['auc']:9.4f} "
                     f"{t['threshold']:10.4f}")
    w = m.get("class_weights")
    weights = f"class weights verified {w['positive']:.3f}, not {w['negative']:.3f}" if w else "no class weights"
    lines.append(f"chosen on validation: ours {_params(m['chosen']['ours'])}; {weights}")
    for k in m["order"]:
        c = m["test"][k]["confusion"]
        lines.append(f"test confusion, {k} at {m['test'][k]['threshold']:.4f}: verified -> {c['tp']:,} right, "
                     f"{c['fn']:,} wrong; not verified -> {c['tn']:,} right, {c['fp']:,} wrong "
                     f"(BER at 0.5: {m['test'][k]['ber_at_0_5']:.4f})")
    return lines


def format_rating(m: dict) -> list[str]:
    lines = [f"task rating: {_sizes(m)}; ratings {m['rating_scale'][0]:g}..{m['rating_scale'][1]:g}",
             f"{'model':<30} {'val RMSE':>9} {'val MAE':>8} {'test RMSE':>10} {'test MAE':>9}"]
    for k in m["order"]:
        v, t = m["validation"][k], m["test"][k]
        lines.append(f"{m['labels'][k]:<30} {v['rmse']:9.4f} {v['mae']:8.4f} {t['rmse']:10.4f} {t['mae']:9.4f}")
    c = m["chosen"]
    lines.append(f"chosen on validation: top100 {_params(c['top100'])}; ours {_params(c['ours'])}")
    if "item_bias_helps" in m:
        h = m["item_bias_helps"]
        lines.append(f"item bias as a feature (lambda {c['ours_item_bias']['item_bias_reg']:g}): "
                     f"{'helps' if h['validation'] else 'does not help'} on validation, "
                     f"{'helps' if h['test'] else 'does not help'} on test")
    return lines


def format_table(m: dict) -> str:
    """The table a run prints: every model's validation and test figures, sizes, what was chosen."""
    lines = format_verified(m) if m["task"] == "verified" else format_rating(m)
    lines += [f"note: {n}" for n in m.get("notes", [])]
    lines.append("timings (s): " + ", ".join(f"{k}={v}" for k, v in m["timings_seconds"].items()))
    return "\n".join(lines)
