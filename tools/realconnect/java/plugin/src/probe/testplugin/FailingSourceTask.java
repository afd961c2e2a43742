package probe.testplugin;

import java.util.List;
import java.util.Map;

import org.apache.kafka.connect.errors.ConnectException;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.source.SourceTask;

/**
 * Task of {@link FailingSourceConnector}: throws on its first poll when {@code fail.task=true} or when
 * {@code fail.task.on.worker} names the worker it runs on; otherwise idles.
 */
public class FailingSourceTask extends SourceTask {
    private boolean fail;

    @Override
    public void start(Map<String, String> props) {
        String worker = System.getProperty("realconnect.worker.id", "");
        fail = Boolean.parseBoolean(props.getOrDefault("fail.task", "false"))
                || (!worker.isEmpty() && worker.equals(props.get("fail.task.on.worker")));
    }

    @Override
    public List<SourceRecord> poll() throws InterruptedException {
        if (fail) {
            throw new ConnectException("task poll() failed on purpose (fail.task / fail.task.on.worker)");
        }
        Thread.sleep(200);
        return null;
    }

    @Override
    public void stop() {
    }

    @Override
    public String version() {
        return "1.0-test";
    }
}
