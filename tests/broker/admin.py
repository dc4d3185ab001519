"""Topic creation that fails loudly: aiokafka's ``create_topics`` returns per-topic errors instead of raising."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code


async def ensure_topics(admin: AIOKafkaAdminClient, topics: list[NewTopic]) -> None:
    """Create the topics; one that already exists is fine, any other per-topic error is raised."""
    response = await admin.create_topics(topics)
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        if code == 0 or code == TopicAlreadyExistsError.errno:
            continue
        message = entry[2] if len(entry) > 2 else None
        raise for_code(code)(f"create topic {name}: {message}")
