"""``adaptlog notify``: alert records to Alertmanager's v2 API and a JSON webhook, at least once.

http.py          the HTTP edge: one POST, outcomes (acked / transient / refused), the retry loop
notice.py        what a sink is given, and the Sink protocol
alertmanager.py  record -> Alertmanager alerts (labels, annotations, startsAt/endsAt), the sink
webhook.py       record -> JSON body with a Slack-compatible ``text``, the sink
worker.py        the consumer group, dead letters, commit after acknowledgement
"""
