"""One experiment end to end: its spec, the model and data it loads, the training loop, the
evaluation, the measurements, and the result file it writes.

    spec ─ experiment (prepared, base_probes, build adapter) ─ train ─ evaluate (generation)
         ─ measure ─ record (`Measurements`, the one writer of the PEFT-suite layout plus
         peftbench's fields, `ResultView` for reading it) ─ results (atomic IO, summaries)

`worker` runs one experiment in its own process (forked warm by `zygote`); `counts` builds
every technique once to count its trainable parameters. Nothing here imports the tournament,
analysis or command-line layers.
"""
