"""The datasets' own annotation formats, read into records, and the ``Annotations`` kinds a ``VideoDataModule``
takes: ``Labels`` (recognition), ``Captions`` (retrieval), ``Questions`` (QA)."""
