#!/usr/bin/perl
# An SMPP 3.4 SMSC for tests, built on Debian's Net::SMPP (libnet-smpp-perl):
# an implementation independent of the client library callproof uses.
# Serves one connection at a time on loopback.  Every submit_sm it receives
# is appended as one JSON line to --log (before it answers), so tests can see
# exactly what reached the "gateway".  Faults are switched on by options:
#   --throttle N        answer the first N submit_sm with ESME_RTHROTTLED
#   --reject-prefix D   destinations starting with D: ESME_RINVDSTADR (permanent)
#   --drop N            the first N submit_sm are accepted (logged) but the
#                       connection is closed before submit_sm_resp is sent
#   --delay S           wait S seconds before each submit_sm_resp (slow peer)
#   --dlr               send a deliver_sm delivery receipt after each accept
#   --dlr-first         with --dlr: send the receipt BEFORE the submit_sm_resp
#                       that gives the client the message id (a receipt that
#                       races ahead of its acceptance)
#   --dlr-skip N        with --dlr: no receipt for the first N accepted messages
#                       (receipts an SMSC lost, e.g. in a restart)
#   --id-start N        message ids count from N (default 1) in every run: a
#                       restarted peer hands out the ids of its previous run
#                       again, as an SMSC that does not persist its id counter
# Prints "LISTENING <port>" on stdout once it accepts connections.
use strict;
use warnings;
use Getopt::Long;
use JSON::PP;
use IO::Handle;
use Net::SMPP;
use Time::HiRes qw(sleep time);
use Socket qw(IPPROTO_TCP TCP_NODELAY);

my ($port, $log, $system_id, $password) = (0, '/dev/null', '', '');
my ($throttle, $reject_prefix, $drop, $delay, $dlr) = (0, '', 0, 0, 0);
my ($dlr_first, $dlr_skip, $id_start) = (0, 0, 1);
GetOptions('port=i' => \$port, 'log=s' => \$log, 'system-id=s' => \$system_id,
           'password=s' => \$password, 'throttle=i' => \$throttle,
           'reject-prefix=s' => \$reject_prefix, 'drop=i' => \$drop, 'delay=f' => \$delay,
           'dlr' => \$dlr, 'dlr-first' => \$dlr_first, 'dlr-skip=i' => \$dlr_skip,
           'id-start=i' => \$id_start) or die "bad options\n";

open(my $logfh, '>>', $log) or die "cannot open $log: $!\n";
$logfh->autoflush(1);
my $json = JSON::PP->new->canonical;
my $listener = Net::SMPP->new_listen('127.0.0.1', port => $port, smpp_version => 0x34,
                                     timeout => 3600)
    or die "cannot listen on 127.0.0.1:$port: $!\n";
STDOUT->autoflush(1);
print "LISTENING ", $listener->sockport, "\n";

my $next_id = $id_start;
while (1) {
    my $conn = $listener->accept or next;
    setsockopt($conn, IPPROTO_TCP, TCP_NODELAY, 1);  # answer each PDU at once (no Nagle delay)
    my $bound = 0;
    PDU: while (my $pdu = $conn->read_pdu()) {
        my $cmd = $pdu->{cmd};
        if ($cmd == Net::SMPP::CMD_bind_transceiver || $cmd == Net::SMPP::CMD_bind_transmitter) {
            my $ok = ($pdu->{system_id} // '') eq $system_id && ($pdu->{password} // '') eq $password;
            my $resp = $cmd == Net::SMPP::CMD_bind_transceiver ? 'bind_transceiver_resp' : 'bind_transmitter_resp';
            $conn->$resp(seq => $pdu->{seq}, status => $ok ? 0 : 0x0E, system_id => 'perlsmsc');
            $bound = $ok;
            print $logfh $json->encode({event => $ok ? 'bind' : 'bind_refused', at => time}), "\n";
        } elsif ($cmd == Net::SMPP::CMD_enquire_link) {
            $conn->enquire_link_resp(seq => $pdu->{seq});
        } elsif ($cmd == Net::SMPP::CMD_unbind) {
            $conn->unbind_resp(seq => $pdu->{seq});
            last PDU;
        } elsif ($cmd == Net::SMPP::CMD_deliver_sm_resp) {
            next PDU;
        } elsif ($cmd == Net::SMPP::CMD_submit_sm) {
            unless ($bound) { $conn->submit_sm_resp(seq => $pdu->{seq}, status => 0x04, message_id => ''); next PDU; }
            my %rec = (event => 'submit_sm', at => time, destination => $pdu->{destination_addr},
                       source => $pdu->{source_addr}, data_coding => $pdu->{data_coding},
                       esm_class => $pdu->{esm_class}, registered_delivery => $pdu->{registered_delivery},
                       short_message_hex => unpack('H*', $pdu->{short_message} // ''));
            my ($status, $id) = (0, '');
            if ($throttle > 0) { $throttle--; $status = 0x58; }
            elsif ($reject_prefix ne '' && index($pdu->{destination_addr}, $reject_prefix) == 0) { $status = 0x0B; }
            else { $id = sprintf('perl%06d', $next_id++); }
            $rec{status} = $status;
            $rec{message_id} = $id;
            if ($status == 0 && $drop > 0) {
                $drop--;
                $rec{dropped} = JSON::PP::true;
                print $logfh $json->encode(\%rec), "\n";
                last PDU;   # accepted, but the answer is lost with the connection
            }
            my $receipt = $status == 0 && $dlr && $pdu->{registered_delivery};
            if ($receipt && $dlr_skip > 0) { $dlr_skip--; $receipt = 0; $rec{receipt} = 'skipped'; }
            print $logfh $json->encode(\%rec), "\n";
            sleep($delay) if $delay > 0;
            receipt($conn, $pdu, $id) if $receipt && $dlr_first;
            $conn->submit_sm_resp(seq => $pdu->{seq}, status => $status, message_id => $id);
            receipt($conn, $pdu, $id) if $receipt && !$dlr_first;
        } else {
            $conn->generic_nack(seq => $pdu->{seq}, status => 0x03);
        }
    }
    close $conn;
}

sub receipt {
    my ($conn, $pdu, $id) = @_;
    my $t = sprintf('%02d%02d%02d%02d%02d', (localtime)[5] % 100, (localtime)[4] + 1, (localtime)[3, 2, 1]);
    $conn->deliver_sm(source_addr => $pdu->{destination_addr}, destination_addr => $pdu->{source_addr},
                      esm_class => 0x04,
                      short_message => "id:$id sub:001 dlvrd:001 submit date:$t done date:$t stat:DELIVRD err:000 text:",
                      async => 1);
    print $logfh $json->encode({event => 'receipt', at => time, message_id => $id}), "\n";
}
