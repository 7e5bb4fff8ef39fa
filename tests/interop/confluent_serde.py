#!/usr/bin/env python3
"""Confluent's own Avro serializer and deserializer (PyPI confluent-kafka),
driven by tests/confluent_interop.rs over stdin/stdout, one JSON line each way.

    confluent_serde.py serialize REGISTRY_URL TOPIC
        in:  {"schema": "<Avro schema text>", "value": {...}, "branch"?: "<record name>"}
        out: {"hex": "<Confluent-framed bytes>"}
        (AvroSerializer, auto-registering under <TOPIC>-value: the topic-name
        strategy, the default)
    confluent_serde.py deserialize REGISTRY_URL TOPIC
        in:  {"hex": "<Confluent-framed bytes>"}
        out: {"value": {...}}
        (AvroDeserializer without a reader schema: the writer schema by id)
"""
import json
import sys
import uuid

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def plain(value):
    """JSON for the logical types fastavro returns (uuid -> its text)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def main() -> int:
    mode, url, topic = sys.argv[1:4]
    client = SchemaRegistryClient({"url": url})
    context = SerializationContext(topic, MessageField.VALUE)
    deserializer = AvroDeserializer(client) if mode == "deserialize" else None
    serializers = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if mode == "serialize":
            text = request["schema"]
            if text not in serializers:
                serializers[text] = AvroSerializer(client, text, conf={"auto.register.schemas": True})
            value = request["value"]
            if "branch" in request:
                # fastavro's notation for the branch of a union of records
                value = (request["branch"], value)
            data = serializers[text](value, context)
            answer = {"hex": data.hex()}
        elif mode == "deserialize":
            answer = {"value": deserializer(bytes.fromhex(request["hex"]), context)}
        else:
            print(f"unknown mode {mode}", file=sys.stderr)
            return 2
        print(json.dumps(answer, default=plain), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
