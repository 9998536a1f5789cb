import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import de.bwaldvogel.mongo.bson.Document;
import io.netty.channel.Channel;
import java.util.List;

/** mongo-java-server's in-memory backend on 127.0.0.1:PORT, until killed. */
public class Serve {
    /** Current drivers (PyMongo 4.x) need wire version 9 or later and ask `hello`; the server
     * knows its older name `isMaster` and says wire version 8 even as "5.0" (MongoDB 5.0 is 13). */
    static class Backend extends MemoryBackend {
        @Override
        public Document handleCommand(Channel channel, String database, String command, Document query) {
            return super.handleCommand(channel, database, command.equals("hello") ? "isMaster" : command, query);
        }
    }

    public static void main(String[] args) throws Exception {
        MongoVersion version = new MongoVersion() {
            public List<Integer> getVersionArray() {
                return List.of(5, 0, 0);
            }

            public int getWireVersion() {
                return 13;
            }
        };
        MongoServer server = new MongoServer(new Backend().version(version));
        server.bind("127.0.0.1", Integer.parseInt(args[0]));
        System.out.println("listening on 127.0.0.1:" + args[0]);
        Thread.currentThread().join();
    }
}
