"""The embedded toy world: a procedural image-caption world (:mod:`.world`, :mod:`.captions`), a tiny CLIP
pre-trained on it and shipped with the package (:mod:`.model`, :mod:`.pretrain`; backbone name ``toyclip``), the
world as datasets in CoOp's format (:mod:`.dataset`) and the base-to-new / domain-generalisation protocol that the
demo and ``benchmarks/toy_protocols.py`` run (:mod:`.protocol`). See docs/toyworld.md."""
