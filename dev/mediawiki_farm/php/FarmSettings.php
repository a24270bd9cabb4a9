<?php
/**
 * LocalSettings of the farm, shared by every wiki. The generated `.state/farm/LocalSettings.php`
 * defines FARM_STATE_DIR and includes this file. The wiki is chosen by:
 *  - MW_DB (maintenance scripts run with --wiki=<dbname>), or
 *  - FARM_DBNAME (defined by the router from the HTTP Host header).
 */
if ( !defined( 'MEDIAWIKI' ) ) {
	exit;
}

require_once "$IP/includes/PlatformSettings.php";
require_once __DIR__ . '/WikibaseItemContent.php';

$farmWikis = require FARM_STATE_DIR . '/wikis.php';
if ( defined( 'MW_DB' ) ) {
	$farmDbname = MW_DB;
} elseif ( defined( 'FARM_DBNAME' ) ) {
	$farmDbname = FARM_DBNAME;
} else {
	$farmDbname = 'template';
}
if ( $farmDbname !== 'template' && !isset( $farmWikis[$farmDbname] ) ) {
	throw new RuntimeException( "The farm has no wiki '$farmDbname'" );
}
$farmWiki = $farmWikis[$farmDbname] ?? [ 'domain' => 'template.invalid', 'lang' => 'en' ];

$wgSitename = $farmWiki['sitename'] ?? 'Farm';
$wgMetaNamespace = 'Project';
$wgServer = '//' . $farmWiki['domain'];
$wgCanonicalServer = 'http://' . $farmWiki['domain'];
$wgScriptPath = '/w';
$wgArticlePath = '/wiki/$1';
$wgResourceBasePath = $wgScriptPath;
$wgLanguageCode = $farmWiki['lang'];
$wgLocaltimezone = 'UTC';
$wgSecretKey = FARM_SECRET_KEY;
$wgAuthenticationTokenVersion = '1';
$wgUpgradeKey = 'farmupgrade';

$wgDBtype = 'sqlite';
$wgDBname = $farmDbname;
$wgDBserver = '';
$wgDBuser = '';
$wgDBpassword = '';
$wgSQLiteDataDir = FARM_STATE_DIR . '/db';
// Maintenance runs (setup/seeding) skip fsync: an interrupted setup is rebuilt from scratch anyway.
$wgDBservers = [ [
	'host' => '',
	'dbname' => $farmDbname,
	'type' => 'sqlite',
	'load' => 1,
	'flags' => DBO_DEFAULT,
	'variables' => [ 'synchronous' => defined( 'MW_DB' ) ? 'OFF' : 'NORMAL' ],
] ];

// The wikis are read-mostly and served by several php -S workers at once: keep caches out of the
// SQLite files (no write locks on reads). The localisation cache is shared by every wiki (per language)
// as PHP arrays, built once during setup.
$wgMainCacheType = CACHE_NONE;
$wgMessageCacheType = CACHE_NONE;
$wgParserCacheType = CACHE_NONE;
$wgSessionCacheType = CACHE_DB;
$wgCacheDirectory = FARM_STATE_DIR . '/cache';
$wgLocalisationCacheConf['store'] = 'array';
$wgLocalisationCacheConf['storeDirectory'] = FARM_STATE_DIR . '/l10n';
$wgObjectCaches[CACHE_DB] = [
	'class' => SqlBagOStuff::class,
	'loggroup' => 'SQLBagOStuff',
	'server' => [
		'type' => 'sqlite',
		'dbname' => 'wikicache',
		'tablePrefix' => '',
		'variables' => [ 'synchronous' => 'NORMAL' ],
		'dbDirectory' => $wgSQLiteDataDir,
		'trxMode' => 'IMMEDIATE',
		'flags' => 0,
	],
];
$wgJobRunRate = 0;
$wgUseInstantCommons = false;
$wgEnableUploads = false;
$wgPingback = false;
$wgShowExceptionDetails = true;
$wgEnableEmail = true;
$wgEnableUserEmail = true;
$wgEmailAuthentication = true;
$wgPasswordSender = 'farm@localhost';

// Seeded edits are dated years back: keep them in recentchanges.
$wgRCMaxAge = 30 * 365 * 86400;
$wgMaxArticleSize = 4096;
$wgAPIMaxResultSize = 32 * 1024 * 1024;

// Groups that Wikimedia wikis have and ORES/revscoring features look at.
foreach ( [ 'rollbacker', 'autopatrolled', 'patroller', 'extendedconfirmed', 'reviewer' ] as $farmGroup ) {
	$wgGroupPermissions[$farmGroup]['read'] = true;
}
$wgGroupPermissions['rollbacker']['rollback'] = true;
$wgGroupPermissions['autopatrolled']['autopatrol'] = true;
$wgGroupPermissions['patroller']['patrol'] = true;
$wgAutoConfirmAge = 4 * 86400;
$wgAutoConfirmCount = 10;

// Wikibase is not available: item pages (Q<digits> in the main namespace of wikidatawiki) use a
// JSON content model registered under Wikibase's model id.
$wgContentHandlers['wikibase-item'] = FarmWikibaseItemHandler::class;
if ( $farmDbname === 'wikidatawiki' ) {
	$wgHooks['ContentHandlerDefaultModelFor'][] = static function ( $title, &$model ) {
		if ( $title->getNamespace() === NS_MAIN && preg_match( '/^Q[1-9]\d*$/', $title->getText() ) ) {
			$model = 'wikibase-item';
			return false;
		}
		return true;
	};
}
