"""The development kit: everything that exists to try ec-node without hardware, kept apart from the node.

A fake HDHomeRun (:mod:`.emulator`, paced by :mod:`.pacing`), synthetic ATSC-like media (:mod:`.synth`,
:mod:`.psip_insert`, cached by :mod:`.media_cache`), a real-decoder check (:mod:`.decode`), process
helpers (:mod:`.procs`) and the demo (:mod:`.demo`). Nothing in the runtime node imports this package;
only the CLI does, for ``ec-node demo``, ``ec-node hdhr-emulator`` and ``ec-node media synth``.
"""
