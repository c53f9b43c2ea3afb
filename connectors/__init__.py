"""The edges of Highway: Kafka clients and admin, S3 and the lake filesystem, the Glue catalog,
and the local infrastructure launchers (a Maven-resolved KRaft broker, moto's S3 server).

``connectors`` never imports ``streams``.
"""
