"""The IP-echo service of the egress testbed (a stand-in for https://checkip.amazonaws.com/):
answers every GET with the client's source address as plain text.

usage: echo-ip.py ADDRESS PORT PID_FILE
"""
import http.server
import os
import sys


class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (self.client_address[0] + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("echo-ip: %s %s\n" % (self.client_address[0], fmt % args))


def main():
    address, port, pid_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    server = http.server.ThreadingHTTPServer((address, port), Echo)
    with open(pid_file + ".tmp", "w") as f:
        f.write("%d\n" % os.getpid())
    os.replace(pid_file + ".tmp", pid_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
