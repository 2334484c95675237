import mmap, os


def test_two_opens_share_bytes(mnt):
    name, fd = mnt.create(4096)
    m = mmap.mmap(fd, 4096)
    fd2 = os.open(mnt.p(name), os.O_RDWR)
    m2 = mmap.mmap(fd2, 4096)
    m[0:4] = b"abcd"
    assert m2[0:4] == b"abcd"
    assert mnt.stats()["regions"] == 1
