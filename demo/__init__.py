"""What `make demo-oauth` runs besides JupyterLab (idp/: an OpenID provider and an API that
accepts its tokens); the OAuth tests use it too. Not part of the session-magics package."""
