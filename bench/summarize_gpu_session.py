"""Summarises one ``bench/gpu_session.sh`` run (its ``runs.tgz`` unpacked in FOLDER) as JSON.

``python bench/summarize_gpu_session.py FOLDER OUT.json``: per-task training/evaluation seconds,
accuracy just after training each task and peak memory, read from each run's ``log.txt`` (runs cut
by the session's time limit have no ``metrics.json``, but their log has every finished task), plus
the solo step timings (``speed_*_cuda.json``) and the fairness benchmark's wall times.
"""
from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

LINE = re.compile(r"after task (\d+): accuracy per task \[(.*?)\], average ([\d.]+); train ([\d.]+) s, "
                  r"eval ([\d.]+) s, (.*)$")


def parse_log(path: Path) -> dict:
    tasks = []
    for line in path.read_text().splitlines():
        m = LINE.search(line)
        if not m:
            continue
        row = [float(v) for v in m.group(2).split(", ")]
        memory = {k: float(v) for k, v in (p.rsplit(" ", 1) for p in m.group(6).split(", "))}
        tasks.append({"task": int(m.group(1)), "just_trained": row[-1], "average": float(m.group(3)),
                      "train_s": float(m.group(4)), "eval_s": float(m.group(5)), **memory})
    if not tasks:
        return {"tasks_done": 0}
    train = [t["train_s"] for t in tasks]
    later = train[1:] or train
    return {
        "tasks_done": len(tasks),
        "finished": (path.parent / "metrics.json").exists(),
        "accuracy_just_trained": [t["just_trained"] for t in tasks],
        "mean_accuracy_just_trained": statistics.mean(t["just_trained"] for t in tasks),
        "train_s_per_task": train,
        "train_s_task0_no_regularizer": train[0],
        "train_s_tasks_1_on": {"median": statistics.median(later), "min": min(later), "max": max(later),
                               "first_10_median": statistics.median(later[:10]),
                               "last_10_median": statistics.median(later[-10:])},
        "peak_gpu_mb_per_task": [t.get("peak_gpu_mb") for t in tasks],
        "peak_rss_mb_last": tasks[-1].get("peak_rss_mb"),
    }


def main(folder: str, out: str) -> None:
    root = Path(folder)
    summary = {"runs": {}, "speed_solo": {}, "fairness": {}}
    for log in sorted(root.glob("*/log.txt")):
        summary["runs"][log.parent.name] = parse_log(log)
    for f in sorted(root.glob("speed_*_cuda.json")):
        summary["speed_solo"][f.stem] = {k: v for k, v in json.loads(f.read_text()).items()}
    for f in sorted(root.glob("fairness_*.json")):
        data = json.loads(f.read_text())
        for bench, rows in data["benchmarks"].items():
            summary["fairness"][bench] = {s: {"hv_mean": r["hv"]["mean"], "wall_s_mean": r["wall_s"]["mean"]}
                                          for s, r in rows.items() if isinstance(r, dict) and "hv" in r}
    Path(out).write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: {kk: {x: y for x, y in vv.items() if not isinstance(y, list)} for kk, vv in v.items()}
                      for k, v in summary.items() if k == "runs"}, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:3])
