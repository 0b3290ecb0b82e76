"""The home node: one process running a tuner's lineup (`ec-node node --config PATH`).

- :mod:`.config` (pure): the TOML config, validated strictly, resolved into one spec per channel;
- :mod:`.plan` (pure): which channel runs on which tuner, what a reload starts/stops/keeps, retries;
- :mod:`.status` : what each channel is doing, learnt from its pipeline events; ``/status``,
  ``/metrics`` and the live table;
- :mod:`.runner` : the asyncio shell running the pipeline entry points as tasks;
- :mod:`.init` : ``--init``, a commented config written from the lineup a tuner serves.
"""
