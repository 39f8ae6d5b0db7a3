"""The command line tools behind ``python -m fasttb`` (fasttb/__main__.py): ``bench`` and
``bench_remote`` (fasttb against the stock writers), ``demo`` (a synthetic training loop) and
``reader_cli`` (``inspect`` and ``export``). Nothing in the writer or the reader imports them."""
