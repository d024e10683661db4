"""The agent's HTTP endpoints: the JSON server (``http``) and what each path shows (``views``)."""
