-- callproof storage: which node a call and an ARI instance belong to (issue 14, items 6 and 7).
--
-- Several Asterisk nodes on one database ([storage] url): a node is named by [recording] node
-- (default the host name), as in the recordings' rows (0018).
--   * ari_leases.node  the node of the instance holding the application, set each time the
--                      instance takes its own lease.  A survivor moves a dead instance's calls
--                      through its own Asterisk's REST interface, so a takeover considers the
--                      expired leases of its own node only: an instance of node b never wins the
--                      lease of node a's dead instance (it would find none of its calls on node
--                      b's Asterisk and release the lease, leaving them where they were).
--                      '' for a lease taken before this migration (its instance writes its node
--                      the next time it starts).
--   * calls.node       the node whose Asterisk carries the call (NULL before this migration).
--                      Asterisk's channel ids are unique per Asterisk only, unless each node sets
--                      its own `systemname` in asterisk.conf (docs/scale-out.md): a node finding
--                      another node's row under its channel id refuses the call instead of taking
--                      it for a resumed one of its own (that would skip the announcement).
ALTER TABLE ari_leases ADD COLUMN node TEXT NOT NULL DEFAULT '';
ALTER TABLE calls ADD COLUMN node TEXT;
