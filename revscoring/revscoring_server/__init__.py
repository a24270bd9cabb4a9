"""The revscoring model server: one `kserve.Model` for every revscoring model type of Lift Wing.

Request flow: `RevscoringModel.preprocess` validates the body and fetches the MediaWiki documents the
model's features need (`fetch`), `predict` runs feature extraction and scoring off the event loop
(`scoring.score_revision`, a pure function of plain data), `postprocess` builds the public response
and, for event input, posts a `mediawiki/revision/score` event.
"""
