<?php
/**
 * Seeds one wiki of the farm from a plan (JSON written by dev/mediawiki_farm/plan.py) in ONE PHP process:
 * users, edits (through MediaWiki's PageUpdater, so revisions, recentchanges, links tables and edit
 * counts are written by MediaWiki itself), then what no core API does offline:
 *  - page_props `wikibase_item` (WikibaseClient would set these; it is not available),
 *  - user_editcount of long-standing accounts (their earlier edits are not part of the fixture),
 *  - rev_deleted bits of the revision whose text is hidden (as Special:RevisionDelete would set them).
 * Every edit runs at the plan's timestamp through ConvertibleTimestamp's fake clock, so revision,
 * recentchanges and registration times are consistent with each other.
 *
 * Usage: php seed.php --wiki=<dbname> --plan=<plan.json> --out=<result.json>
 */

use MediaWiki\MediaWikiServices;
use MediaWiki\Revision\RevisionRecord;
use MediaWiki\Revision\SlotRecord;
use MediaWiki\User\UserIdentityValue;
use Wikimedia\Timestamp\ConvertibleTimestamp;

require_once getenv( 'MW_INSTALL_PATH' ) . '/maintenance/Maintenance.php';

class FarmSeed extends Maintenance {
	/** @var User[] */
	private $users = [];

	public function __construct() {
		parent::__construct();
		$this->addOption( 'plan', 'Seed plan (JSON)', true, true );
		$this->addOption( 'out', 'Where to write the ids that were created (JSON)', true, true );
	}

	public function execute() {
		$plan = json_decode( file_get_contents( $this->getOption( 'plan' ) ), true, 512, JSON_THROW_ON_ERROR );
		foreach ( $plan['users'] as $spec ) {
			$this->users[$spec['name']] = $this->createUser( $spec );
		}
		$revs = [];
		foreach ( $plan['edits'] as $edit ) {
			$revs[$edit['key']] = $this->edit( $edit );
		}
		ConvertibleTimestamp::setFakeTime( false );
		$this->runJobs();
		$this->writeDirectRows( $plan, $revs );
		$result = [ 'revs' => $revs, 'users' => [] ];
		foreach ( $this->users as $name => $user ) {
			$result['users'][$name] = $user->getId();
		}
		file_put_contents( $this->getOption( 'out' ), json_encode( $result, JSON_PRETTY_PRINT ) );
	}

	private function at( string $timestamp ): void {
		ConvertibleTimestamp::setFakeTime( (int)wfTimestamp( TS_UNIX, $timestamp ) );
	}

	private function createUser( array $spec ): User {
		$this->at( $spec['registration'] );
		$user = User::createNew( $spec['name'], [ 'email' => $spec['email'] ?? '' ] );
		if ( !$user ) {
			$this->fatalError( "Could not create user {$spec['name']} (already there?)" );
		}
		$services = MediaWikiServices::getInstance();
		if ( !empty( $spec['email'] ) ) {
			$user->confirmEmail();
			$user->saveSettings();
		}
		if ( !empty( $spec['gender'] ) ) {
			$options = $services->getUserOptionsManager();
			$options->setOption( $user, 'gender', $spec['gender'] );
			$options->saveOptions( $user );
		}
		foreach ( $spec['groups'] ?? [] as $group ) {
			$services->getUserGroupManager()->addUserToGroup( $user, $group );
		}
		DeferredUpdates::doUpdates();
		return $user;
	}

	private function edit( array $edit ): array {
		$this->at( $edit['timestamp'] );
		$services = MediaWikiServices::getInstance();
		$title = Title::newFromText( $edit['title'] );
		$page = $services->getWikiPageFactory()->newFromTitle( $title );
		$performer = isset( $edit['ip'] )
			? new UserIdentityValue( 0, $edit['ip'] )
			: $this->users[$edit['user']];
		$content = ContentHandler::makeContent( $edit['text'], $title, $edit['model'] ?? null );
		$updater = $page->newPageUpdater( $performer );
		$updater->setContent( SlotRecord::MAIN, $content );
		$flags = ( $edit['minor'] ?? false ) ? EDIT_MINOR : 0;
		$rev = $updater->saveRevision( CommentStoreComment::newUnsavedComment( $edit['summary'] ), $flags );
		if ( !$rev ) {
			$this->fatalError( "Edit {$edit['key']} of {$edit['title']} failed: " .
				Status::wrap( $updater->getStatus() )->getWikiText( false, false, 'en' ) );
		}
		DeferredUpdates::doUpdates();
		return [ 'rev_id' => $rev->getId(), 'page_id' => $rev->getPageId(), 'title' => $title->getPrefixedText() ];
	}

	private function runJobs(): void {
		$runner = MediaWikiServices::getInstance()->getJobRunner();
		$runner->run( [ 'type' => false, 'maxJobs' => 100000, 'maxTime' => 600 ] );
		DeferredUpdates::doUpdates();
	}

	private function writeDirectRows( array $plan, array $revs ): void {
		$dbw = $this->getDB( DB_PRIMARY );
		foreach ( $plan['page_props'] as $key => $props ) {
			foreach ( $props as $name => $value ) {
				$dbw->replace( 'page_props', [ [ 'pp_page', 'pp_propname' ] ], [
					'pp_page' => $revs[$key]['page_id'],
					'pp_propname' => $name,
					'pp_value' => $value,
					'pp_sortkey' => null,
				], __METHOD__ );
			}
		}
		foreach ( $plan['users'] as $spec ) {
			if ( isset( $spec['editcount'] ) ) {
				$dbw->update( 'user', [ 'user_editcount' => $spec['editcount'] ],
					[ 'user_id' => $this->users[$spec['name']]->getId() ], __METHOD__ );
			}
		}
		foreach ( $plan['hidden'] as $key ) {
			$revId = $revs[$key]['rev_id'];
			$dbw->update( 'revision', [ 'rev_deleted' => RevisionRecord::DELETED_TEXT ],
				[ 'rev_id' => $revId ], __METHOD__ );
			$dbw->update( 'recentchanges', [ 'rc_deleted' => RevisionRecord::DELETED_TEXT ],
				[ 'rc_this_oldid' => $revId ], __METHOD__ );
		}
	}
}

$maintClass = FarmSeed::class;
require_once RUN_MAINTENANCE_IF_MAIN;
