"""Kafka Connect's REST API as the sidecar reads it: the client and its error tree
(``client``), the response structs (``models``) and their per-connector decoding (``decoding``)."""
