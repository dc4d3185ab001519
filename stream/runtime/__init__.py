"""The runtime every consume -> process -> produce -> commit loop shares: the stream stages
(``stream.pipeline.runner``), the inference worker, the notifier and the trainer's feedback service.

    policy         Action, Backoff, ErrorPolicy, and every loop's table of exception class -> action (one place)
    dead_letters   DeadLetters: the one builder of dead letters (logged with topic[partition]@offset, counted)
    processing     each_record: process records one at a time, dead-lettering what the policy says
    delivery       Deliveries: send and confirm, or publish and wait; never commit past an unacknowledged record
    retry          retrying: try an operation again in process while its policy says RETRY, with its backoff
    commit         offsets_after, commit_offsets: within a timeout, refused commits skipped (rebalance safety)
    runtime        Runtime: the above for one loop
    pipeline       Pipeline, Assignment: the driver's pipelined mode (micro-batches gathered while the previous
                   one is processed; the batch in flight settled at a revocation)
    loop           ConsumeLoop: the one poll -> process -> produce -> commit driver, with a loop's hooks (every
                   loop above runs on it; the inference worker's pipelined)

The runtime belongs to ``stream``; the trainer imports it, never the other way round. Import from the modules.
"""
