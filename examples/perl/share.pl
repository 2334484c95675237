#!/usr/bin/perl
# SPDX-License-Identifier: MIT
# share.pl — two processes share memory through a capshm region (Perl).
#
#   terminal 1:  perl share.pl create          prints the region's name, waits for a reply
#   terminal 2:  perl share.pl attach          reads NAME from stdin (or
#                                              $CAPSHM_NAME), reads the message,
#                                              writes a reply
#
# The name is the key to the region: it travels on stdin or in the
# environment, never on the command line (/proc/PID/cmdline is public).
#
# Core Perl has no mmap; File::Map (Debian: libfile-map-perl) maps the file
# MAP_SHARED into a string, and substr() on that string reads and writes the
# shared bytes in place (never change its length).  The mount is $CAPSHM_DIR,
# else /run/capshm.  Layout (shared by every example): offset 0 the creator's
# message, offset 2048 the reply, offset 4095 set to 1 once the reply is
# complete (written last).
use strict;
use warnings;
use Fcntl qw(O_RDWR O_CREAT O_EXCL);
use File::Map qw(map_handle unmap);
use Time::HiRes qw(sleep);

my $DIR = $ENV{CAPSHM_DIR} || '/run/capshm';
my ($SIZE, $MSG, $REPLY, $DONE) = (4096, 0, 2048, 4095);

# The NUL-terminated text at $off.
sub text_at {
    my ($m, $off) = @_;
    return unpack('Z*', substr($m, $off));
}

# Write $s at $off in place (4-argument substr keeps the length).
sub put {
    my ($off, $s) = @_;
    substr($_[2], $off, length $s, $s);
}

sub create {
    # 1. Mint a name: every read of .new gives a fresh, unguessable one.
    open(my $new, '<', "$DIR/.new") or die "share.pl: $DIR/.new: $!\n";
    chomp(my $name = <$new>);
    close $new;
    # 2. Create the region under that name and give it a size.
    sysopen(my $fh, "$DIR/$name", O_RDWR | O_CREAT | O_EXCL, 0600)
        or die "share.pl: create: $!\n";
    truncate($fh, $SIZE) or die "share.pl: truncate: $!\n";
    map_handle(my $m, $fh, '+<', 0, $SIZE);
    close $fh; # the mapping alone keeps the region alive

    put($MSG, "hello from Perl, pid $$\0", $m);
    $| = 1;
    print "$name\n"; # the name is the capability: pass it on

    for (1 .. 6000) { # wait up to a minute for the reply
        if (ord(substr($m, $DONE, 1)) == 1) {
            print 'reply: ', text_at($m, $REPLY), "\n";
            return 0;
        }
        sleep 0.01;
    }
    print STDERR "share.pl: no reply within 60 s\n";
    return 1;
}

sub attach {
    my ($name) = @_;
    sysopen(my $fh, "$DIR/$name", O_RDWR) or die "share.pl: $name: $!\n";
    map_handle(my $m, $fh, '+<', 0, $SIZE);
    close $fh;
    print 'message: ', text_at($m, $MSG), "\n";
    put($REPLY, "thanks from Perl, pid $$\0", $m);
    put($DONE, "\x01", $m); # last: the reply is complete
    unmap($m);
    return 0;
}

if (@ARGV == 1 && $ARGV[0] eq 'create') {
    exit create();
}
if (@ARGV == 1 && $ARGV[0] eq 'attach') {
    my $name = $ENV{CAPSHM_NAME} // '';
    if ($name eq '') {
        $name = <STDIN> // '';
        $name =~ s/\s+\z//;
    }
    if ($name eq '') {
        print STDERR "share.pl: no NAME on stdin or in CAPSHM_NAME\n";
        exit 2;
    }
    exit attach($name);
}
print STDERR "usage: share.pl create | share.pl attach  (NAME on stdin or in CAPSHM_NAME)\n";
exit 2;
