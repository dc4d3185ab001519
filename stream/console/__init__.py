"""``adaptlog console``: the operator console, server-rendered pages over what the topics carry.

    alerts, windows, feedback, model-updates ──> feeds (own consumer group) ──> view (bounded, in memory)
    view ──> pages (Starlette + Jinja2) ──> operator ──> labels ──> outbox (undo window) ──> feedback
                                                    └─> rollback ──> registry pointer + model-updates

Modules: ``view`` (incidents, windows, templates, systems: pure, bounded), ``outbox`` (labels waiting out their undo
window, then feedback records), ``access`` (bearer tokens, trusted proxy headers, roles, CSRF), ``models`` (the
registry: versions, held-out F1, rollback), ``plot`` (the F1 plot as SVG), ``feeds`` (Kafka in and out), ``pages``
(the routes) and ``app`` (wiring and serving).
"""
