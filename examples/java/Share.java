// SPDX-License-Identifier: MIT
/*
 * Share.java — two processes share memory through a capshm region (Java,
 * the JDK only).
 *
 *   javac -d . Share.java
 *   terminal 1:  java Share create          prints the region's name, waits for a reply
 *   terminal 2:  java Share attach          reads NAME from stdin (or $CAPSHM_NAME),
 *                                           reads the message, writes a reply
 *   (or, without javac:  java Share.java create)
 *
 * The name is the key to the region, so it travels on stdin or in the
 * environment, never on the command line (/proc/PID/cmdline is public).
 *
 * The region is a file: FileChannel.open(CREATE_NEW) is O_CREAT|O_EXCL, and
 * FileChannel.map(READ_WRITE) is mmap(MAP_SHARED), which also sizes the new,
 * empty region (ftruncate) to the length mapped.  The mount is $CAPSHM_DIR,
 * else /run/capshm.  Layout (shared by every example): offset 0 the
 * creator's message, offset 2048 the reply, offset 4095 set to 1 once the
 * reply is complete (written last).
 *
 * Atomics: a VarHandle from MethodHandles.byteBufferViewVarHandle gives
 * atomic and acquire/release access to aligned ints and longs of a direct
 * buffer such as the mapping.  There is none for single bytes, so the flag at
 * 4095 is set and read through the int at 4092 that holds it (little-endian:
 * 4095 is its top byte): getAndBitwiseOrRelease and getAcquire.
 */
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;

public class Share {
    static final int SIZE = 4096, MSG = 0, REPLY = 2048, DONE = 4095;
    static final int DONE_WORD = DONE & ~3;
    static final VarHandle INT_LE =
        MethodHandles.byteBufferViewVarHandle(int[].class, ByteOrder.LITTLE_ENDIAN);

    static Path dir() {
        String d = System.getenv("CAPSHM_DIR");
        return Path.of(d != null && !d.isEmpty() ? d : "/run/capshm");
    }

    static long pid() {
        return ProcessHandle.current().pid();
    }

    /** The NUL-terminated text at off. */
    static String textAt(MappedByteBuffer m, int off) {
        int end = off;
        while (end < SIZE && m.get(end) != 0)
            end++;
        byte[] b = new byte[end - off];
        m.get(off, b);
        return new String(b, StandardCharsets.UTF_8);
    }

    static void put(MappedByteBuffer m, int off, String s) {
        m.put(off, (s + "\0").getBytes(StandardCharsets.UTF_8));
    }

    static int create() throws IOException, InterruptedException {
        // 1. Mint a name: every read of .new gives a fresh, unguessable one.
        String name = Files.readString(dir().resolve(".new")).strip();
        // 2. Create the region under that name (O_CREAT|O_EXCL, mode 0600),
        //    size it and map it.
        MappedByteBuffer m;
        try (FileChannel ch = FileChannel.open(dir().resolve(name),
                StandardOpenOption.CREATE_NEW, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            Files.setPosixFilePermissions(dir().resolve(name), PosixFilePermissions.fromString("rw-------"));
            m = ch.map(FileChannel.MapMode.READ_WRITE, 0, SIZE);
        } // the mapping alone keeps the region alive

        put(m, MSG, "hello from Java, pid " + pid());
        System.out.println(name); // the name is the capability: pass it on
        System.out.flush();

        for (int i = 0; i < 6000; i++) { // wait up to a minute for the reply
            if ((int) INT_LE.getAcquire(m, DONE_WORD) >>> 24 == 1) {
                System.out.println("reply: " + textAt(m, REPLY));
                return 0;
            }
            Thread.sleep(10);
        }
        System.err.println("Share: no reply within 60 s");
        return 1;
    }

    static int attach(String name) throws IOException {
        MappedByteBuffer m;
        try (FileChannel ch = FileChannel.open(dir().resolve(name),
                StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            m = ch.map(FileChannel.MapMode.READ_WRITE, 0, SIZE);
        }
        System.out.println("message: " + textAt(m, MSG));
        put(m, REPLY, "thanks from Java, pid " + pid());
        INT_LE.getAndBitwiseOrRelease(m, DONE_WORD, 1 << 24); // last: the reply is complete
        return 0;
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 1 && args[0].equals("create"))
            System.exit(create());
        if (args.length == 1 && args[0].equals("attach")) {
            String name = System.getenv("CAPSHM_NAME");
            if (name == null || name.isEmpty()) {
                String line = new BufferedReader(new InputStreamReader(System.in)).readLine();
                name = line == null ? "" : line.strip();
            }
            if (name.isEmpty()) {
                System.err.println("Share: no NAME on stdin or in CAPSHM_NAME");
                System.exit(2);
            }
            try {
                System.exit(attach(name));
            } catch (IOException e) {
                System.err.println("Share: " + e);
                System.exit(1);
            }
        }
        System.err.println("usage: java Share create | java Share attach  (NAME on stdin or in CAPSHM_NAME)");
        System.exit(2);
    }
}
