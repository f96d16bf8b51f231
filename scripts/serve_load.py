"""textclf-serve under load, side by side with its peers in one run (docs/serving.md): the same single-text
requests at 1, 8, 32 and 128 concurrent clients against textclf-serve and against a hand-written server
(`transformers.pipeline` on the checkpoint's Hugging Face export inside a plain FastAPI route, what users
write by hand), and the same texts through the in-process `Predictor`: texts/s, p50/p95/p99 latency,
errors, the server's RSS over time. `--soak N` then sends N requests, 10 % of them malformed or oversized,
and checks that every good one is answered as textclf-predict answers it and every bad one 4xx, and the
server's RSS at the end against after warm-up. The servers' RSS over every run is drawn into `--rss-plot`.

    .venv/bin/python scripts/serve_load.py                                      # MiniLM, random head
    .venv/bin/python scripts/serve_load.py --checkpoint run/checkpoints/best.ckpt --soak 100000
    .venv/bin/python scripts/serve_load.py --requests 40 --clients 1 8 --texts 50 --soak 200   # a tiny check

Each level sends `--requests` requests or runs `--seconds` seconds, whichever ends first. Servers listen on
127.0.0.1 only and run as subprocesses; RSS is read from /proc (Linux). A benchmark, not a test: run it
alone on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from tabulate import tabulate

HOST = "127.0.0.1"
SCRIPTS = Path(__file__).resolve().parent
SOAK_LIMITS = {"max_chars_per_text": 2000, "max_texts_per_request": 32}


def cpu_set(text: str) -> set[int]:
    """CPUs written as taskset writes them: 0-3,6."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def pin(server_cpus: set[int] | None, every_cpu: set[int]) -> None:
    """This script's clients on the CPUs that are not the servers'."""
    if server_cpus:
        others = every_cpu - server_cpus
        if not others:
            raise SystemExit("--server-cpus leaves no CPU to the load generator")
        os.sched_setaffinity(0, others)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_texts(count: int) -> list[str]:
    from textclf.data.packaged import rotten_tomatoes

    texts = rotten_tomatoes()["train"]["text"].str.replace("\n", " ").tolist()
    return [texts[index % len(texts)] for index in range(count)]


def reference(checkpoint: Path, texts: list[str], precision: str, directory: Path) -> list[dict]:
    """textclf-predict's rows for `texts` (JSONL: label and probabilities)."""
    from textclf import compose_config
    from textclf.inference.prediction import predict

    source, output = directory / "texts.txt", directory / "predicted.jsonl"
    source.write_text("".join(text.replace("\n", " ") + "\n" for text in texts), encoding="utf-8")
    overrides = [f"ckpt_path={checkpoint}", f"input={source}", f"output={output}", f"precision={precision}"]
    predict(compose_config("predict", overrides, directory / "predict"))
    lines = output.read_text(encoding="utf-8").split("\n")  # not splitlines(): texts may hold U+2028
    return [json.loads(line) for line in lines if line]


def start(command: list[str], url: str, cpus: set[int] | None) -> subprocess.Popen:
    """A server subprocess (on `cpus`, when given), once its /health answers 200."""
    if cpus:
        command = ["taskset", "-c", ",".join(map(str, sorted(cpus))), *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{command[:4]} exited: {process.stderr.read()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    process.kill()
    raise SystemExit(f"{command[:4]} did not become ready in 300 s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=60)


async def sample_rss(pid: int, samples: list[tuple[float, float]], start: float) -> None:
    while True:
        samples.append((round(time.monotonic() - start, 1), rss_mb(pid)))
        await asyncio.sleep(0.5)


async def drive(url: str, bodies: list[bytes], clients: int, seconds: float, pid: int) -> dict:
    """`clients` loops posting `bodies` in turn until all are sent or `seconds` pass: per-request status and
    latency, the elapsed time and the server's RSS samples."""
    results: list[tuple[int, int, float]] = []  # (index, status or -1, seconds)
    samples: list[tuple[float, float]] = []
    next_index, start = 0, time.monotonic()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    # httpx writes a request's headers and body apart: without TCP_NODELAY, Nagle's algorithm holds the body
    # until the server's delayed ACK (40 ms on Linux), a wait in every request that no server is to blame for
    transport = httpx.AsyncHTTPTransport(limits=limits, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < len(bodies) and time.monotonic() - start < seconds:
            index, next_index = next_index, next_index + 1
            sent = time.perf_counter()
            try:
                response = await client.post(url, content=bodies[index], headers={"Content-Type": "application/json"})
                status, answer = response.status_code, response.content
            except httpx.HTTPError:
                status, answer = -1, b""
            results.append((index, status, time.perf_counter() - sent))
            answers[index] = answer

    answers: dict[int, bytes] = {}
    sampler = asyncio.ensure_future(sample_rss(pid, samples, start))
    async with httpx.AsyncClient(timeout=60, transport=transport) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
    sampler.cancel()
    return {"results": results, "answers": answers, "seconds": time.monotonic() - start, "rss": samples}


WRK_SCRIPT = """
bodies = {%s}
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bodies[counter %% #bodies + 1])
end
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status
    + summary.errors.timeout
  io.write(string.format('WRK {"requests": %%d, "errors": %%d, "seconds": %%f, "p50": %%f, "p95": %%f, "p99": %%f}\\n',
    summary.requests, errors, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(95) / 1e3,
    latency:percentile(99) / 1e3))
end
"""


async def drive_wrk(url: str, bodies: list[bytes], clients: int, seconds: float, pid: int) -> dict:
    """The same level driven by wrk (C, one thread: a fraction of the Python client's CPU), cycling through
    `bodies` for `seconds`: wrk's counts and latency percentiles, and the server's RSS samples."""
    lua = WRK_SCRIPT % ", ".join("[==[" + body.decode() + "]==]" for body in bodies)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    samples: list[tuple[float, float]] = []
    start = time.monotonic()
    sampler = asyncio.ensure_future(sample_rss(pid, samples, start))
    command = ["wrk", "-t1", f"-c{clients}", f"-d{int(seconds)}s", "--timeout", "60s", "-s", script.name, url]
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    output, _ = await process.communicate()
    sampler.cancel()
    Path(script.name).unlink()
    (line,) = [line for line in output.decode().splitlines() if line.startswith("WRK ")]
    return {"wrk": json.loads(line[4:]), "rss": samples}


def summary(name: str, clients: int, run: dict) -> dict:
    if "wrk" in run:
        return wrk_summary(name, clients, run)
    ok = [seconds for _, status, seconds in run["results"] if status == 200]
    latency = np.percentile(ok, [50, 95, 99]) * 1000 if ok else [float("nan")] * 3
    rss = [value for _, value in run["rss"]] or [float("nan")]
    return {
        "server": name,
        "clients": clients,
        "requests": len(run["results"]),
        "texts/s": round(len(ok) / run["seconds"], 1),
        "p50 ms": round(latency[0], 1),
        "p95 ms": round(latency[1], 1),
        "p99 ms": round(latency[2], 1),
        "errors": len(run["results"]) - len(ok),
        "RSS MB start/peak/end": f"{rss[0]:.0f}/{max(rss):.0f}/{rss[-1]:.0f}",
    }


def wrk_summary(name: str, clients: int, run: dict) -> dict:
    counts, rss = run["wrk"], [value for _, value in run["rss"]] or [float("nan")]
    return {
        "server": f"{name} (wrk)",
        "clients": clients,
        "requests": counts["requests"],
        "texts/s": round((counts["requests"] - counts["errors"]) / counts["seconds"], 1),
        "p50 ms": round(counts["p50"], 1),
        "p95 ms": round(counts["p95"], 1),
        "p99 ms": round(counts["p99"], 1),
        "errors": counts["errors"],
        "RSS MB start/peak/end": f"{rss[0]:.0f}/{max(rss):.0f}/{rss[-1]:.0f}",
    }


def in_process(checkpoint: Path, texts: list[str], precision: str, cpus: set[int] | None) -> dict:
    """The same texts through a Predictor in this process (on the servers' CPUs, when they are pinned)."""
    from textclf.inference.predictor import Predictor

    if cpus:
        os.sched_setaffinity(0, cpus)

    predictor = Predictor.from_checkpoint(checkpoint, precision=precision)
    predictor.predict_proba(texts[:64])  # warm-up
    start = time.perf_counter()
    predictor.predict_proba(texts)
    return {"server": "in-process Predictor", "clients": "-", "requests": len(texts)} | {
        "texts/s": round(len(texts) / (time.perf_counter() - start), 1)
    }


def serve_command(checkpoint: Path, port: int, precision: str, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "textclf", "serve", f"ckpt_path={checkpoint}", f"port={port}"] + [
        f"precision={precision}",
        "hydra.run.dir=" + tempfile.mkdtemp(prefix="serve-load-"),
        *overrides,
    ]


def export_hf(checkpoint: Path, directory: Path) -> Path:
    from textclf import compose_config
    from textclf.export.exporter import export

    overrides = [f"ckpt_path={checkpoint}", "format=hf", f"output_dir={directory / 'hf'}"]
    return Path(export(compose_config("export", overrides, directory / "export")))


def baseline_server(hf_dir: str, port: int) -> None:
    """The hand-written server: a pipeline inside a plain FastAPI route, one request at a time per thread."""
    import uvicorn
    from fastapi import FastAPI
    from transformers import pipeline

    classify = pipeline("text-classification", model=hf_dir, top_k=None, truncation=True)
    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"ready": True}

    @app.post("/")
    def predict(body: dict) -> list:
        return [classify(body["inputs"])]

    uvicorn.run(app, host=HOST, port=port, log_level="warning")


def bodies_of(texts: list[str]) -> list[bytes]:
    return [json.dumps({"inputs": text}).encode() for text in texts]


def levels(
    name: str, command: list[str], url: str, texts: list[str], args: argparse.Namespace, rss: dict[str, list]
) -> list[dict]:
    """One server at each number of clients: a row each; its RSS samples into `rss`."""
    process = start(command, url, args.server_cpus)
    try:
        rows = []
        for clients in args.clients:
            driver = drive_wrk if args.client == "wrk" else drive
            run = asyncio.run(driver(url + "/", bodies_of(texts)[: args.requests], clients, args.seconds, process.pid))
            rows.append(summary(name, clients, run))
            rss[f"{name}, {clients} clients"] = run["rss"]
            print(tabulate([rows[-1]], headers="keys", tablefmt="github"), flush=True)
        return rows
    finally:
        stop(process)


def soak_bodies(texts: list[str], count: int, seed: int = 0) -> tuple[list[bytes], list[int | None]]:
    """`count` bodies, 10 % of them bad (malformed, missing inputs, a wrong type, a text too long, too many
    texts); beside each, the index of its text in `texts` (None: a bad one)."""
    rng = random.Random(seed)
    bad = [
        b'{"inputs": ',
        b'{"text": "a missing inputs field"}',
        b'{"inputs": 12}',
        json.dumps({"inputs": "long " * SOAK_LIMITS["max_chars_per_text"]}).encode(),
        json.dumps({"inputs": ["one"] * (SOAK_LIMITS["max_texts_per_request"] + 1)}).encode(),
    ]
    bodies, which = [], []
    for number in range(count):
        if rng.random() < 0.1:
            bodies.append(bad[number % len(bad)])
            which.append(None)
        else:
            index = rng.randrange(len(texts))
            bodies.append(json.dumps({"inputs": texts[index]}).encode())
            which.append(index)
    return bodies, which


def is_right(answer: bytes, expected: dict, tolerance: float) -> bool:
    best = json.loads(answer)[0][0]
    return (
        best["label"] == expected["label"]
        and abs(best["score"] - expected["probabilities"][best["label"]]) <= tolerance
    )


def plot_rss(rss: dict[str, list], path: Path) -> None:
    """The servers' RSS over each run, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 4.5))
    for name, samples in rss.items():
        axes.plot([second for second, _ in samples], [mb for _, mb in samples], marker=".", label=name)
    axes.set(xlabel="seconds into the run", ylabel="server RSS (MB)", title="textclf-serve load: server memory")
    axes.legend(fontsize="small", ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"RSS over time: {path}")


def soak(checkpoint: Path, texts: list[str], expected: list[dict], args: argparse.Namespace, rss: dict) -> dict:
    port = free_port()
    url = f"http://{HOST}:{port}"
    limits = [f"{key}={value}" for key, value in SOAK_LIMITS.items()]
    process = start(serve_command(checkpoint, port, args.precision, *limits), url, args.server_cpus)
    try:
        bodies, which = soak_bodies(texts, args.soak)
        warm = asyncio.run(drive(url + "/", bodies[:1000], 32, args.seconds, process.pid))
        after_warm_up = rss_mb(process.pid)
        run = asyncio.run(drive(url + "/", bodies, 32, float("inf"), process.pid))
        rss["soak, 32 clients"] = run["rss"]
    finally:
        end = rss_mb(process.pid)
        stop(process)
    status = {index: code for index, code, _ in run["results"]}
    good = [index for index, text in enumerate(which) if text is not None]
    tolerance = 1e-4 if args.precision == "32-true" else 2e-2
    return {
        "requests": len(bodies),
        "good": len(good),
        "good lost": sum(status.get(index) != 200 for index in good),
        "good wrong": sum(
            status.get(index) == 200 and not is_right(run["answers"][index], expected[which[index]], tolerance)
            for index in good
        ),
        "bad": len(bodies) - len(good),
        "bad not 4xx": sum(not 400 <= status.get(index, -1) < 500 for index, text in enumerate(which) if text is None),
        "RSS MB after warm-up": round(after_warm_up, 1),
        "RSS MB at the end": round(end, 1),
        "end / warm-up": round(end / after_warm_up, 3),
        "seconds": round(run["seconds"] + warm["seconds"], 1),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="a textclf checkpoint (default: MiniLM with a random head)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--texts", type=int, default=2000, help="distinct rotten_tomatoes texts sent")
    parser.add_argument("--requests", type=int, default=2000, help="requests per level at most")
    parser.add_argument("--seconds", type=float, default=60, help="seconds per level at most")
    parser.add_argument("--precision", default="auto", help="the servers' and the Predictor's precision")
    parser.add_argument("--soak", type=int, default=0, help="requests of the soak run (0: none)")
    parser.add_argument("--rss-plot", type=Path, default=Path("serve_load_rss.png"), help="RSS over time (PNG)")
    parser.add_argument(
        "--server-cpus", type=cpu_set, help="pin the servers to these CPUs (0-3), the clients elsewhere"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the hand-written pipeline server")
    parser.add_argument(
        "--client", choices=("python", "wrk"), default="python", help="the levels' load generator (wrk: Debian's wrk)"
    )
    parser.add_argument("--soak-only", action="store_true", help="only the soak run: no levels, no baseline")
    parser.add_argument("--baseline-server", nargs=2, metavar=("HF_DIR", "PORT"), help=argparse.SUPPRESS)
    return parser.parse_args()


def compare_servers(
    checkpoint: Path, texts: list[str], args: argparse.Namespace, rss: dict, directory: Path, every_cpu: set[int]
) -> None:
    """The in-process Predictor, then textclf-serve and the hand-written server at each level of clients."""
    rows = [in_process(checkpoint, texts, args.precision, args.server_cpus)]
    pin(args.server_cpus, every_cpu)
    port = free_port()
    url = f"http://{HOST}:{port}"
    rows += levels("textclf-serve", serve_command(checkpoint, port, args.precision), url, texts, args, rss)
    if not args.no_baseline:
        hf_dir, port = export_hf(checkpoint, directory), free_port()
        command = [sys.executable, __file__, "--baseline-server", str(hf_dir), str(port)]
        rows += levels("pipeline in FastAPI", command, f"http://{HOST}:{port}", texts, args, rss)
    print(tabulate(rows, headers="keys", tablefmt="github"))


def main() -> None:
    args = parse_args()
    if args.baseline_server:
        baseline_server(args.baseline_server[0], int(args.baseline_server[1]))
        return
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        checkpoint = args.checkpoint
        if checkpoint is None:
            sys.path.insert(0, str(SCRIPTS))
            from predict_large import make_checkpoint

            checkpoint = make_checkpoint("all-MiniLM-L6-v2", directory)
        texts, rss = load_texts(args.texts), {}
        every_cpu = os.sched_getaffinity(0)
        if not args.soak_only:
            compare_servers(checkpoint, texts, args, rss, directory, every_cpu)
        else:
            pin(args.server_cpus, every_cpu)
        if args.soak:
            expected = reference(checkpoint, texts, args.precision, directory)
            print(tabulate([soak(checkpoint, texts, expected, args, rss)], headers="keys", tablefmt="github"))
        plot_rss(rss, args.rss_plot)


if __name__ == "__main__":
    main()
