"""The audit core: what running an audit file needs, without pytest.

- :mod:`.session`: models (loaded once per process, cached, on their device), images, masks;
- :mod:`.evaluate`: one expectation measured, compared and said in a sentence (:mod:`.evaluation`);
- :mod:`.dataset_pass`: one pass over a dataset for every expectation of a file on it;
- :mod:`.baselines` and :mod:`.value_baselines`: stored maps and recorded values.

The pytest plugin (:mod:`vitaudit.plugin`) and the executors call into it; it imports neither.
"""
