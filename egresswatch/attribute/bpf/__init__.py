"""In-kernel attribution: cgroup eBPF programs assembled in Python, loaded via ctypes bpf()."""
