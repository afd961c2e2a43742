package probe.testplugin;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.errors.ConnectException;
import org.apache.kafka.connect.source.SourceConnector;

/**
 * Test-only source connector that fails on demand.
 * {@code fail.connector=true}: {@link #start} throws, so the connector goes FAILED.
 * {@code fail.task=true}: each task throws on its first poll, so the tasks go FAILED.
 * {@code fail.task.on.worker=127.0.0.1:PORT}: only tasks running on that worker throw (the harness
 * starts each worker JVM with {@code -Drealconnect.worker.id=<its worker id>}).
 * Otherwise the tasks run and produce nothing.
 */
public class FailingSourceConnector extends SourceConnector {
    static final ConfigDef CONFIG = new ConfigDef()
            .define("fail.connector", ConfigDef.Type.BOOLEAN, false, ConfigDef.Importance.HIGH,
                    "Throw from the connector's start().")
            .define("fail.task", ConfigDef.Type.BOOLEAN, false, ConfigDef.Importance.HIGH,
                    "Throw from each task's first poll().")
            .define("fail.task.on.worker", ConfigDef.Type.STRING, "", ConfigDef.Importance.HIGH,
                    "Throw from the first poll() of tasks running on the worker with this id.");

    private Map<String, String> props;

    @Override
    public void start(Map<String, String> props) {
        this.props = props;
        if (Boolean.parseBoolean(props.getOrDefault("fail.connector", "false"))) {
            throw new ConnectException("fail.connector=true: connector start() failed on purpose");
        }
    }

    @Override
    public Class<? extends Task> taskClass() {
        return FailingSourceTask.class;
    }

    @Override
    public List<Map<String, String>> taskConfigs(int maxTasks) {
        List<Map<String, String>> configs = new ArrayList<>();
        for (int i = 0; i < maxTasks; i++) configs.add(props);
        return configs;
    }

    @Override
    public void stop() {
    }

    @Override
    public ConfigDef config() {
        return CONFIG;
    }

    @Override
    public String version() {
        return "1.0-test";
    }
}
