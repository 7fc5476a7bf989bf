"""The OpenID provider (oidc-provider on Node) and the API it protects: ``python -m demo.idp``."""
