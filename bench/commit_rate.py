"""Synchronous offset commits per second from one confluent-kafka consumer.

    .venv/bin/python bench/commit_rate.py --bootstrap 127.0.0.1:9092 [--commits 2000]
"""
from __future__ import annotations

import argparse
import time
import uuid

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--commits", type=int, default=2000)
    args = parser.parse_args()
    topic = f"commit-bench-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(10)
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": topic, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)  # coordinator found
        started = time.perf_counter()
        for i in range(1, args.commits + 1):
            consumer.commit(offsets=[TopicPartition(topic, 0, i)], asynchronous=False)
        elapsed = time.perf_counter() - started
        [committed] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        assert committed.offset == args.commits, committed
    finally:
        consumer.close()
    print(f"{args.commits} synchronous commits in {elapsed:.2f}s: {args.commits / elapsed:,.0f} commits/s")


if __name__ == "__main__":
    main()
