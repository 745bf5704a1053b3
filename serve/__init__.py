"""Ray Serve application: unlearned models behind the guard over an OpenAI-compatible API.

``OpenAIIngress`` (``serve/ingress.py``: API keys, limits, input guard, output through
``StreamGuard``, metrics, audit) -> ``UnlearnModel`` (``serve/model.py``: ``@serve.multiplexed``
model ids, engines in ``serve/engines.py``). Built by ``serve/app.py`` from ``serve/config.yaml``
(``serve run serve/config.yaml``) or by ``unlearn serve --model ID=PATH --guard ID=INDEX``.
"""
