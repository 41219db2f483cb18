"""llmgw's benchmarks: run on demand with ``python -m tests.benchmarks``, never by pytest.

See ``__main__.py`` for what is measured and ``README.md`` beside this file for how.
"""
