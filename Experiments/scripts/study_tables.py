#!/usr/bin/env python3
"""Markdown tables of a study's results (DIR/study.json, written by `diffusion-rl study ...`).

usage: Experiments/scripts/study_tables.py DIR/study.json [N ...]
  overoptimization: each selector's gold alignment gain and its own proxy gain at the given N
  (default 1 2 4 8 16 32 64, those the study has), the fit, and the fine-tuning runs;
  perspectives: every selector's gain in each gold perspective at the study's largest N.
"""
import json, sys


def fmt(e):
    if e is None or e.get("mean") is None:
        return "—"
    return f"{e['mean']:+.3f} ± {e['standardError']:.3f}"


def main():
    result = json.load(open(sys.argv[1]))
    ns = [int(n) for n in sys.argv[2:]] or [1, 2, 4, 8, 16, 32, 64]
    ns = sorted(set([n for n in ns if n <= len(result["n"])] + [len(result["n"])]))
    if result["study"] == "overoptimization":
        print("| selected by | " + " | ".join(f"N = {n} (d = {result['klBound'][n - 1] ** 0.5:.2f})" for n in ns) + " | fit α, β (R²) | peak N |")
        print("|---|" + "---:|" * (len(ns) + 2))
        for s in result["selectors"]:
            gold = s["gains"]["gold_alignment"]
            fit = s.get("fit")
            fit_text = f"{fit['alpha']:.3f}, {fit['beta']:.3f} ({fit['rSquared']:.2f})" if fit and fit.get("rSquared") is not None else "—"
            print(f"| {s['name']}: gold alignment | " + " | ".join(fmt(gold[n - 1]) for n in ns) + f" | {fit_text} | {s['peakN']} |")
            own = s["gains"].get(s["name"])
            if own and s["name"] != "gold_alignment":
                print(f"| {s['name']}: its own score | " + " | ".join(fmt(own[n - 1]) for n in ns) + " | | |")
        if result.get("runs"):
            print()
            print("| fine-tuning run | path KL | √KL | gold alignment gain | proxy gain |")
            print("|---|---:|---:|---:|---:|")
            proxy = [k for k in result["runs"][0]["gains"] if k.startswith("proxy") or k.startswith("rm")]
            for r in result["runs"]:
                kl = r["kl"] if isinstance(r["kl"], (int, float)) else float("nan")
                print(f"| {r['run']} | {kl:.0f} | {kl ** 0.5:.1f} | {fmt(r['gains']['gold_alignment'])} | "
                      + ", ".join(fmt(r["gains"][p]) for p in proxy) + " |")
            fit = result.get("runsFit")
            if fit:
                print(f"\nRL form over the runs: α {fit['alpha']:.3f}, β {fit['beta']:.3f}, R² {fit['rSquared']:.2f}")
    else:
        n = len(result["n"])
        columns = [("gold_alignment", "alignment"), ("gold_alignment_partial", "partial"), ("gold_fidelity", "fidelity"),
                   ("gold_safety", "hazard rate"), ("gold_overall", "overall")]
        print(f"| selected by (best of {n}) | " + " | ".join(c[1] for c in columns) + " |")
        print("|---|" + "---:|" * len(columns))
        for s in result["selectors"]:
            cells = []
            for key, label in columns:
                e = s["gains"][key][n - 1]
                if label == "hazard rate" and e and e.get("mean") is not None:
                    e = {"mean": -e["mean"], "standardError": e["standardError"]}
                cells.append(fmt(e))
            print(f"| {s['name']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
