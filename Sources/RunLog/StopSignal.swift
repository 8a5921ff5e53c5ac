#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Turns SIGINT and SIGTERM into a request that a run loop checks between epochs, so that the run
/// log is flushed and closed cleanly instead of being cut mid-write. A second signal exits at once
/// (the log then still holds every epoch flushed before).
public enum StopSignal {
    // Written from the signal handler, read by the run loop; a plain word store is enough here.
    nonisolated(unsafe) private static var count: Int32 = 0

    /// Installs the handlers (once per process).
    public static func install() {
        let handler: @convention(c) (Int32) -> Void = { signal in
            StopSignal.count += 1
            if StopSignal.count > 1 { _exit(128 + signal) }
        }
        signal(SIGINT, handler)
        signal(SIGTERM, handler)
    }

    /// Whether a stop was requested.
    public static var requested: Bool { count > 0 }

    /// Requests a stop as a first signal would: how the processes of a distributed job that did
    /// not receive the signal learn of another's.
    public static func request() { if count == 0 { count = 1 } }

    /// Requests a stop when any process of a job was asked to: `anyProcess` is the job's "is
    /// this true anywhere" (`Communicator.anyRank`), so every process stops at the same point.
    public static func agree(_ anyProcess: (Bool) throws -> Bool) rethrows {
        if try anyProcess(requested) { request() }
    }
}
