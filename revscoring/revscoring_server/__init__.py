"""The revscoring model server: one `kserve.Model` for every revscoring model type of Lift Wing.

Request flow: `RevscoringModel.preprocess` validates the body (a revision, a batch or an event); `predict`
asks its wiki's scorer (`scorer.WikiScorer`, the one road to every score, ORES's API included), which
fetches the MediaWiki documents for the whole batch (`fetch`) and runs extraction and scoring off the
event loop (`scoring.score_revision_models`, a pure function of plain data); `response` shapes the answer
and, for event input, the `mediawiki/revision/score` event.
"""
