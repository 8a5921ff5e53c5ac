#!/usr/bin/env python3
"""Random-kill campaign: finetune, pretrain, reward train and a study, each SIGKILLed at N random
moments and resumed; every resumed result must equal the uninterrupted run's, byte for byte.

For each job, one uninterrupted run gives the reference and its duration T. Then N times: a fresh
run in its own folder, killed with SIGKILL after a delay drawn uniformly from (0.02 T, 0.98 T) —
during sampling, an update, a checkpoint write or a log flush, wherever it happens to be — and
resumed with --resume (or, when it was killed before its first checkpoint, started again with
--force, as a user would). The result files are compared byte for byte, and every metric of the
log, epoch by epoch (bit patterns; timings excepted), through `inspect --json --series`: the log
must hold every finished epoch once.

usage: Experiments/scripts/kill_campaign.py [--kills 20] [--seed 1] [--out Logs/kill-campaign] [--bin .build/release/diffusion-rl]
Prints a table and writes OUT/campaign.json. Standard library only.
"""
import argparse, json, os, random, shutil, signal, struct, subprocess, sys, time

PRETRAIN = {
    "captionDropout": 0.1, "checkpointEvery": 6, "diffusionBatch": 4, "diffusionSteps": 60, "logEvery": 3, "seed": 0,
    "threads": 1, "vaeBatch": 4, "vaeSteps": 60, "warmupSteps": 2,
    "model": {"imageSize": 16,
              "text": {"heads": 2, "layers": 1, "maxLength": 5, "width": 8},
              "unet": {"attentionHeads": 2, "blockOutChannels": [8, 16], "crossAttention": [True, False], "crossAttentionDimension": 8,
                       "inChannels": 2, "layersPerBlock": 1, "normGroups": 4, "outChannels": 2},
              "vae": {"blockChannels": [4, 8, 8], "latentChannels": 2, "layersPerBlock": 1, "normGroups": 2}},
}
CAPTION = {"model": {"imageSize": 16, "patchSize": 4, "visionWidth": 8, "visionLayers": 1, "visionHeads": 2, "width": 16, "layers": 1,
                     "heads": 2}, "steps": 120, "batch": 4, "logEvery": 2, "checkpointEvery": 4, "threads": 1}
DATA = {"generatedPerPrompt": 2, "contrastiveGenerated": 1, "contrastiveRenders": 1, "sampling": {"steps": 2}}


def run(argv, **kwargs):
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()[-400:]}")
    return result


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=2)
    return path


def fixtures(binary, folder):
    """A tiny diffusion model, caption decoder, preference data and reward model for the jobs."""
    os.makedirs(folder, exist_ok=True)
    if not os.path.isdir(f"{folder}/base/model"):
        run([binary, "pretrain", "--config", write_json(f"{folder}/pretrain.json", PRETRAIN), "--out", f"{folder}/base", "--force"])
    if not os.path.isdir(f"{folder}/mllm/decoder"):
        run([binary, "reward", "pretrain", "--config", write_json(f"{folder}/caption.json", CAPTION), "--out", f"{folder}/mllm", "--force"])
    if not os.path.exists(f"{folder}/data/data.jsonl"):
        run([binary, "reward", "make-data", "--model", f"{folder}/base/model", "--config", write_json(f"{folder}/data.json", DATA),
             "--out", f"{folder}/data", "--prompts", "3", "--threads", "1", "--force"])
    if not os.path.isdir(f"{folder}/reward/model"):
        run([binary, "reward", "train", "--decoder", f"{folder}/mllm/decoder", "--data", f"{folder}/data/data.jsonl",
             "--out", f"{folder}/reward", "--threads", "1", "--force"])


def jobs(folder):
    """(name, command without --out, result files to compare) for each job of the campaign."""
    finetune = write_json(f"{folder}/finetune.json", {
        "model": f"{folder}/base/model", "threads": 1, "epochs": 80, "promptPool": 4, "promptsPerEpoch": 2, "imagesPerPrompt": 2,
        "sampling": {"steps": 4}, "samplingBatch": 4, "trainBatch": 2, "gradientAccumulation": 1, "learningRate": 0.01,
        "kl": {"samples": 0}, "statMinCount": 2, "evaluation": {"prompts": 0},
        "rewards": {"weights": {"alignment_partial": 1, "compressibility": 0.1}}})
    pretrain = dict(PRETRAIN, vaeSteps=240, diffusionSteps=240)
    train = write_json(f"{folder}/reward-train.json", {"decoder": f"{folder}/mllm/decoder", "data": f"{folder}/data/data.jsonl",
                                                        "epochs": 200, "logEvery": 1, "threads": 1})
    return [
        ("finetune", ["finetune", "--config", finetune], ["model/unet.safetensors"]),
        ("pretrain", ["pretrain", "--config", write_json(f"{folder}/pretrain-long.json", pretrain)], ["model/unet.safetensors", "model/vae.safetensors"]),
        ("reward train", ["reward", "train", "--config", train], ["model/reward_model.safetensors"]),
        ("study perspectives", ["study", "perspectives", "--model", f"{folder}/base/model", "--reward-model", f"{folder}/reward/model",
                                "--n-prompts", "2", "--images-per-prompt", "2", "--best-of", "120", "--steps", "3", "--threads", "1"], []),
    ]


def logged_rows(binary, log):
    """Rows (epochs, or logged intervals) of a run log and its events; 0 and none when it cannot be read."""
    result = subprocess.run([binary, "inspect", log, "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if result.returncode != 0:
        return 0, []
    summary = json.loads(result.stdout)
    return summary["epochs"], summary["events"]


def metrics(binary, log):
    """Every metric's values (bit patterns; timings left out) and the epoch count of a run log."""
    summary = json.loads(run([binary, "inspect", log, "--json", "--series"]).stdout)
    pack = lambda v: "null" if v is None else struct.pack("<d", v).hex()
    return summary["epochs"], {m["name"]: [pack(v) for v in m["values"]] for m in summary["metrics"] if "second" not in m["name"]}


def same_files(a, b, files):
    return all(open(f"{a}/{name}", "rb").read() == open(f"{b}/{name}", "rb").read() for name in files)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="Logs/kill-campaign")
    parser.add_argument("--bin", default=".build/release/diffusion-rl")
    args = parser.parse_args()
    binary = os.path.abspath(args.bin)
    rng = random.Random(args.seed)
    fixtures(binary, f"{args.out}/fixtures")
    rows = []
    for name, command, files in jobs(f"{args.out}/fixtures"):
        reference = f"{args.out}/{name.replace(' ', '-')}/reference"
        start = time.time()
        run([binary] + command + ["--out", reference, "--force"])
        duration = time.time() - start
        expected = metrics(binary, f"{reference}/run.h5")
        row = {"job": name, "seconds": round(duration, 2), "kills": 0, "finished_before_kill": 0, "restarted": 0, "identical": 0, "differing": [],
               "rows_lost": []}
        for k in range(args.kills):
            folder = f"{args.out}/{name.replace(' ', '-')}/kill-{k:02d}"
            shutil.rmtree(folder, ignore_errors=True)
            delay = rng.uniform(0.02, 0.98) * duration
            process = subprocess.Popen([binary] + command + ["--out", folder], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                row["kills"] += 1
            else:
                row["finished_before_kill"] += 1
            process.wait()
            rows_at_kill, _ = logged_rows(binary, f"{folder}/run.h5")
            resumed = subprocess.run([binary] + command + ["--out", folder, "--resume"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if resumed.returncode != 0:
                # Killed before anything resumable was written: start again, as a user would.
                row["restarted"] += 1
                run([binary] + command + ["--out", folder, "--force"])
            # Rows the resume kept: the epoch of its "resume" event (every trainer logs one); a study,
            # whose log is its state, keeps every finished row; a restart keeps none.
            _, events = logged_rows(binary, f"{folder}/run.h5")
            resumes = [e["epoch"] for e in events if e["kind"] == "resume"]
            kept = 0 if resumed.returncode != 0 else (resumes[-1] if resumes else rows_at_kill)
            row["rows_lost"].append(max(rows_at_kill - kept, 0))
            ok = same_files(reference, folder, files) and metrics(binary, f"{folder}/run.h5") == expected
            if ok:
                row["identical"] += 1
            else:
                row["differing"].append(k)
            print(f"  {name}: kill {k + 1}/{args.kills} after {delay:.2f} s: {'identical' if ok else 'DIFFERS'}", file=sys.stderr, flush=True)
        rows.append(row)
    write_json(f"{args.out}/campaign.json", rows)
    print("job                 run (s)  kills  finished first  restarted  identical  rows lost (max, mean)  differing")
    for r in rows:
        lost = r["rows_lost"] or [0]
        print(f"{r['job']:<19} {r['seconds']:7.2f} {r['kills']:6d} {r['finished_before_kill']:15d} {r['restarted']:10d} {r['identical']:10d}"
              f"  {max(lost):6d} {sum(lost) / len(lost):8.2f}        {r['differing']}")
    sys.exit(0 if all(not r["differing"] for r in rows) else 1)


if __name__ == "__main__":
    main()
