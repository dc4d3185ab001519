"""The runtime every consume -> process -> produce -> commit loop shares: the stream stages
(``stream.pipeline.runner``), the inference worker, the notifier and the trainer's feedback service.

    policy         Action, Backoff, ErrorPolicy, and every loop's table of exception class -> action (one place)
    dead_letters   DeadLetters: the one builder of dead letters (logged with topic[partition]@offset, counted)
    processing     each_record: process records one at a time, dead-lettering what the policy says
    delivery       Deliveries: send and confirm, or publish and wait; never commit past an unacknowledged record
    retry          retrying: try an operation again in process while its policy says RETRY, with its backoff
    commit         offsets_after, commit_offsets: within a timeout, refused commits skipped (rebalance safety)
    runtime        Runtime: the above for one loop
    loop           ConsumeLoop: the one poll -> process -> produce -> commit driver, with a loop's hooks (the stream
                   stages, the feedback service and the notifier run on it; why the inference worker does not: there)

The runtime belongs to ``stream``; the trainer imports it, never the other way round. Import from the modules.
"""
