"""Web clients for people: the guardian app, the border officer's console and the authority
dashboard, as self-contained static files (``static/``) every node serves under ``/app/``.

No third-party origin, no CDN, no build step: plain ES modules, a strict Content-Security-Policy,
keys made and kept in the browser with WebCrypto, signing the same bytes as the Python client
(``tests/vectors/``). :mod:`node.web.routes` serves them; :mod:`node.web.console` is the officer
console's local back end inside ``custos terminal run --console``.
"""
