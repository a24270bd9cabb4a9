<?php
/**
 * Router for `php -S`: picks the wiki from the Host header and runs MediaWiki's entry point.
 * The generated `.state/farm/router.php` defines FARM_STATE_DIR, FARM_SETTINGS and MW_DIR, then
 * includes this file.
 */

function farmFail( int $status, string $message ): bool {
	http_response_code( $status );
	header( 'Content-Type: application/json; charset=utf-8' );
	header( 'MediaWiki-API-Error: farm-' . $status );
	echo json_encode( [ 'error' => [ 'code' => 'farm-unknown', 'info' => $message ] ], JSON_UNESCAPED_SLASHES );
	echo "\n";
	return true;
}

$farmHost = strtolower( preg_replace( '/:\d+$/', '', $_SERVER['HTTP_HOST'] ?? '' ) );
$farmDbname = null;
foreach ( require FARM_STATE_DIR . '/wikis.php' as $dbname => $wiki ) {
	if ( $wiki['domain'] === $farmHost ) {
		$farmDbname = $dbname;
		break;
	}
}
if ( $farmDbname === null ) {
	return farmFail( 404, "No wiki is served for host '$farmHost' by this MediaWiki farm" );
}

$farmPath = parse_url( $_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH );
$farmEntryPoints = [ '/w/api.php', '/w/index.php', '/w/load.php', '/w/rest.php' ];
if ( $farmPath === '/' || str_starts_with( $farmPath, '/wiki/' ) ) {
	if ( $farmPath === '/' ) {
		$_GET['title'] = '';
	} else {
		$_GET['title'] = rawurldecode( substr( $farmPath, strlen( '/wiki/' ) ) );
	}
	$farmPath = '/w/index.php';
}
if ( str_starts_with( $farmPath, '/w/rest.php/' ) ) {
	$_SERVER['PATH_INFO'] = substr( $farmPath, strlen( '/w/rest.php' ) );
	$farmPath = '/w/rest.php';
}
if ( !in_array( $farmPath, $farmEntryPoints, true ) ) {
	return farmFail( 404, "Unknown path '$farmPath' on host '$farmHost' (the API is at /w/api.php)" );
}

define( 'FARM_DBNAME', $farmDbname );
define( 'MW_CONFIG_FILE', FARM_SETTINGS );
$farmScript = MW_DIR . substr( $farmPath, strlen( '/w' ) );
$_SERVER['SCRIPT_NAME'] = $farmPath;
$_SERVER['PHP_SELF'] = $farmPath;
$_SERVER['SCRIPT_FILENAME'] = $farmScript;
chdir( MW_DIR );
require $farmScript;
return true;
