"""Shared core of the Lift Wing model servers.

Every model family (revscoring, outlink) builds on these modules: configuration, the MediaWiki Action API
client, input validation, error mapping, events, and server start-up.
"""
