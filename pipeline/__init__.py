"""FlowCMS pipeline: from a git ref to a published, content-addressed build."""

__version__ = "0.1.0"
