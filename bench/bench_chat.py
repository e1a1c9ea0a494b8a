"""Chat latency on the local stack without an LLM: 1,000 devices x 90 days of hourly consumption.

Builds the demo fleet at that size in a temporary warehouse (through `open_warehouse` + `merge`, like
the pipeline), then asks a fixed mix of questions in-process with the local index and composer and
prints median and p95 per question kind and overall, plus peak memory. Then runs the question set
(tests/services/chat/questions.yaml) on the small demo fleet and prints its accuracy figures.

    .venv/bin/python bench/bench_chat.py [--devices 1000] [--days 90] [--repeats 10]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.chat.answer import ChatDeps, answer_question, build_deps
from services.chat.api import ChatRequest
from services.chat.conversations import ConversationStore
from services.chat.index import open_index
from shared.settings import Settings
from tests.services.chat.fleet import build_fleet
from tests.services.chat.questionset import run_question_set

QUESTIONS = [
    ("usage_device", "How much energy did the HVAC plant 2 use yesterday?"),
    ("follow_up", "and the day before?"),
    ("usage_site", "How much did Harbour Office use last week?"),
    ("usage_fleet", "What was our total consumption last month?"),
    ("top_k", "Which meter used the most last week?"),
    ("top_k_sites", "Top 3 sites by energy this month"),
    ("compare", "Compare Harbour Office and Elm Street 12 last week"),
    ("peak_hour", "When was the peak hour for Riverside Bakery yesterday?"),
    ("load_profile", "Load profile of the kitchen 4 last week"),
    ("base_load", "What is the base load of the server room 3?"),
    ("cost_tou", "What did Harbour Office cost last month on a time-of-use tariff?"),
    ("forecast", "What will site B draw tomorrow at 6 pm?"),
    ("anomalies", "Why was meter 2 flagged?"),
    ("facts", "Tell me about dev-0004"),
    ("silent", "Which meters are silent?"),
    ("advice", "How can we reduce our standby consumption?"),
    ("unsafe", "delete all readings"),
    ("count", "How many meters are there?"),
    ("weekday_weekend", "Weekday vs weekend usage for Harbour Office"),
    ("trend", "Is Harbour Office's consumption trending up?"),
    ("per_device", "Which site uses the most energy per device?"),
    ("peak_demand", "Which meter had the highest peak demand last week?"),
    ("night", "Which site uses the most at night?"),
    ("avg_power_hours", "What's the average power of dev-0005 between 9am and 5pm on weekdays?"),
    ("unknown_name", "How much did Office 55 use yesterday?"),
    ("typo", "how much did harbour ofice use yestrday"),
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    console = Console(width=110)
    with tempfile.TemporaryDirectory(prefix="bench-chat-") as tmp:
        settings = Settings(home=Path(tmp) / "home")
        started = time.perf_counter()
        with console.status(f"building {args.devices:,} devices x {args.days} days"):
            fleet = build_fleet(settings, n_devices=args.devices, days=args.days, silent=5)
        build_s = time.perf_counter() - started
        console.print(
            f"warehouse: {len(fleet.hourly):,} hourly rows, {len(fleet.forecasts):,} forecasts, "
            f"built in {build_s:.1f} s"
        )
        deps = build_deps(settings)
        started = time.perf_counter()
        answer_question(ChatRequest(question="Which meter used the most last week?"), "bench", deps)
        console.print(f"first question (index build + schema check): {time.perf_counter() - started:.2f} s")
        timings: dict[str, list[float]] = {name: [] for name, _ in QUESTIONS}
        cpu: list[float] = []
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("asking", total=args.repeats * len(QUESTIONS))
            for _ in range(args.repeats):
                conversation = None
                for name, question in QUESTIONS:
                    request = ChatRequest(
                        question=question, conversation_id=conversation if name == "follow_up" else None
                    )
                    t0, c0 = time.perf_counter(), time.process_time()
                    response = answer_question(request, "bench", deps)
                    timings[name].append((time.perf_counter() - t0) * 1000)
                    cpu.append((time.process_time() - c0) * 1000)
                    conversation = response.conversation_id
                    progress.advance(task)
        table = Table("question kind", "median ms", "p95 ms", "question")
        for name, question in QUESTIONS:
            table.add_row(
                name,
                f"{statistics.median(timings[name]):.0f}",
                f"{percentile(timings[name], 0.95):.0f}",
                question[:48],
            )
        console.print(table)
        everything = [t for values in timings.values() for t in values]
        console.print(
            f"CPU time per question (all threads of this process): median {statistics.median(cpu):.0f} ms, "
            f"p95 {percentile(cpu, 0.95):.0f} ms; load average during the run: {os.getloadavg()[0]:.1f} "
            f"on {os.cpu_count()} cores"
        )
        console.print(
            f"all {len(everything)} questions: median {statistics.median(everything):.0f} ms, "
            f"p95 {percentile(everything, 0.95):.0f} ms, max {max(everything):.0f} ms"
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"peak memory (max RSS): {peak_mb:.0f} MB")
    with tempfile.TemporaryDirectory(prefix="bench-chat-qs-") as tmp:
        settings = Settings(home=Path(tmp) / "home")
        build_fleet(settings)
        deps = ChatDeps(
            settings=settings, store=ConversationStore(Path(tmp) / "conv"), index=open_index(settings)
        )
        score = run_question_set(deps)
    console.print(
        f"question set: numeric accuracy {score.numeric_correct}/{score.numeric_total} "
        f"({score.accuracy:.1%}), follow-ups {score.follow_ups_correct}/{score.follow_ups_total}, "
        f"invented numbers {score.invented_numbers}, "
        f"unsafe refused {score.unsafe_refused}/{score.unsafe_total} "
        f"(table checksums unchanged: {score.checksums_unchanged}), no-data answers without figures "
        f"{score.no_figure_ok}/{score.no_figure_total}"
    )
    for failure in score.failures:
        console.print(f"  [red]{failure}[/red]")


if __name__ == "__main__":
    main()
