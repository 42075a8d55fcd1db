//! One socket, several owners: the reader and the writer of a
//! [`Connection`](super::Connection) and (on a server) the shutdown
//! registry each hold a handle on the same socket.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

/// A `TcpStream` that several owners can share without duplicating the file
/// descriptor: the reader, the writer and (on a server) the shutdown registry
/// hold the same socket. `&TcpStream` implements `Read` and `Write`, which is
/// what makes this work.
#[derive(Debug, Clone)]
pub struct SharedStream(Arc<TcpStream>);

impl SharedStream {
    /// Wraps a stream so that it can be shared.
    pub fn new(stream: TcpStream) -> SharedStream {
        SharedStream(Arc::new(stream))
    }

    /// The socket itself, for `peer_addr`, `shutdown` or timeouts.
    pub fn socket(&self) -> &TcpStream {
        &self.0
    }
}

impl Read for SharedStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

impl Write for SharedStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
