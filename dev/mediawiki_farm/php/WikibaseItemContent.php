<?php
/**
 * Stand-in for Wikibase's `wikibase-item` content model (Wikibase itself is not packaged in Debian).
 *
 * Item pages keep Wikibase entity JSON (id, type, labels, descriptions, aliases, claims, sitelinks)
 * under the model id `wikibase-item`, so the API reports the same content model and text as
 * Wikidata does. Saved text is kept byte for byte (no pretty-printing), like Wikibase's compact JSON.
 */

class FarmWikibaseItemContent extends JsonContent {
	public function __construct( $text, $modelId = 'wikibase-item' ) {
		parent::__construct( $text, $modelId );
	}
}

class FarmWikibaseItemHandler extends JsonContentHandler {
	public function __construct( $modelId = 'wikibase-item' ) {
		parent::__construct( $modelId );
	}

	protected function getContentClass() {
		return FarmWikibaseItemContent::class;
	}

	public function preSaveTransform(
		Content $content,
		MediaWiki\Content\Transform\PreSaveTransformParams $pstParams
	): Content {
		return $content;
	}
}
