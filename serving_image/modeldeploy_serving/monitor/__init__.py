"""The monitoring sidecar: scrape the model server, judge a sliding window, report on the Pod.

Pure core (``window``, ``verdict``, ``parse``, ``report``'s builders and write policy) behind a
thin I/O shell (``scrape``, ``kube``, ``http``, ``loop``). ``main`` is the console script.
"""
