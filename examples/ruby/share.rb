#!/usr/bin/env ruby
# SPDX-License-Identifier: MIT
# share.rb — two processes share memory through a capshm region (Ruby, the
# standard library only).
#
#   terminal 1:  ruby share.rb create          prints the region's name, waits for a reply
#   terminal 2:  ruby share.rb attach          reads NAME from stdin (or
#                                              $CAPSHM_NAME), reads the message,
#                                              writes a reply
#
# The name is the key to the region: it travels on stdin or in the
# environment, never on the command line (/proc/PID/cmdline is public).
#
# Ruby has no mmap of its own; Fiddle (in the standard library) calls libc's
# mmap(MAP_SHARED), and the Fiddle::Pointer it returns reads and writes the
# shared bytes in place (ptr[off, len], ptr[off, len] = str).  The mount is
# $CAPSHM_DIR, else /run/capshm.  Layout (shared by every example): offset 0
# the creator's message, offset 2048 the reply, offset 4095 set to 1 once the
# reply is complete (written last).
require 'fiddle'

DIR = ENV['CAPSHM_DIR'].to_s.empty? ? '/run/capshm' : ENV['CAPSHM_DIR']
SIZE, MSG, REPLY, DONE = 4096, 0, 2048, 4095
PROT_READ, PROT_WRITE, MAP_SHARED = 1, 2, 1 # Linux values

LIBC = Fiddle.dlopen(nil)
MMAP = Fiddle::Function.new(LIBC['mmap'],
                            [Fiddle::TYPE_VOIDP, Fiddle::TYPE_SIZE_T, Fiddle::TYPE_INT,
                             Fiddle::TYPE_INT, Fiddle::TYPE_INT, Fiddle::TYPE_LONG],
                            Fiddle::TYPE_VOIDP)
MUNMAP = Fiddle::Function.new(LIBC['munmap'], [Fiddle::TYPE_VOIDP, Fiddle::TYPE_SIZE_T],
                              Fiddle::TYPE_INT)

# The region's first SIZE bytes, mapped shared and read-write.
def map_region(file)
  p = MMAP.call(nil, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, file.fileno, 0)
  raise SystemCallError.new('mmap', Fiddle.last_error) if [-1, 2**64 - 1].include?(p.to_i)
  p.size = SIZE
  p
end

# The NUL-terminated text at off.
def text_at(m, off)
  m[off, SIZE - off].split("\0", 2)[0].force_encoding('UTF-8')
end

def create
  # 1. Mint a name: every read of .new gives a fresh, unguessable one.
  name = File.read(File.join(DIR, '.new')).strip
  # 2. Create the region under that name and give it a size.
  m = File.open(File.join(DIR, name), File::RDWR | File::CREAT | File::EXCL, 0o600) do |f|
    f.truncate(SIZE)
    map_region(f)
  end # the mapping alone keeps the region alive

  msg = "hello from Ruby, pid #{Process.pid}\0"
  m[MSG, msg.bytesize] = msg
  puts name # the name is the capability: pass it on
  $stdout.flush

  6000.times do # wait up to a minute for the reply
    if m[DONE] == 1
      puts "reply: #{text_at(m, REPLY)}"
      return 0
    end
    sleep 0.01
  end
  warn 'share.rb: no reply within 60 s'
  1
end

def attach(name)
  m = File.open(File.join(DIR, name), File::RDWR) { |f| map_region(f) }
  puts "message: #{text_at(m, MSG)}"
  reply = "thanks from Ruby, pid #{Process.pid}\0"
  m[REPLY, reply.bytesize] = reply
  m[DONE] = 1 # last: the reply is complete
  MUNMAP.call(m, SIZE)
  0
end

case ARGV
when ['create']
  exit create
when ['attach']
  name = ENV['CAPSHM_NAME'].to_s
  name = ($stdin.gets || '').strip if name.empty?
  if name.empty?
    warn 'share.rb: no NAME on stdin or in CAPSHM_NAME'
    exit 2
  end
  begin
    exit attach(name)
  rescue SystemCallError => e
    warn "share.rb: #{e.message}"
    exit 1
  end
else
  warn 'usage: share.rb create | share.rb attach  (NAME on stdin or in CAPSHM_NAME)'
  exit 2
end
